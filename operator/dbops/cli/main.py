"""The ``dbops`` command: one entry point for the operator, the runner commands and CRD generation."""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import io
import os
import sys
from collections.abc import Sequence

import dbops
from dbops import errors

# Subcommand → the module that registers it. Each module defines ``register(subparsers)``, which adds its
# subcommand(s) with ``set_defaults(run=...)``; ``run(args) -> int`` returns the process exit code.
COMMAND_MODULES = {
    "crds": "dbops.cli.crds",
    "api-reference": "dbops.cli.reference",
    "manifests": "dbops.cli.manifests",
    "operator": "dbops.cli.operator",
    "backup": "dbops.cli.backup",
    "delete-backup": "dbops.cli.backup",
    "restore": "dbops.cli.restore",
    "verify": "dbops.cli.verify",
    "migrate": "dbops.cli.migrate",
    "verify-db": "dbops.cli.migrate",
    "check": "dbops.cli.check",
    "trigger": "dbops.cli.trigger",
}


# One line per subcommand for ``dbops --help``, so listing them imports none of their modules (P6: the CLI
# starts in well under 0.3 s); a unit test keeps these equal to the help each module registers.
COMMAND_HELP = {
    "crds": "write the CRDs generated from the API models",
    "api-reference": "write the API reference generated from the API models",
    "manifests": "write the CRD copies and RBAC of helm/dbops and manifests/operator",
    "operator": "run the dbops operator (Kopf)",
    "backup": "dump a database into storage (manifest written last)",
    "delete-backup": "delete a stored backup (manifest first)",
    "restore": "restore a stored backup into a database",
    "verify": "verify a stored backup",
    "migrate": "plan, apply, roll back and inspect schema migrations",
    "verify-db": "verify a live database after a migration",
    "check": "pre-migration checks of a live database",
    "trigger": "create a DatabaseBackup for a schedule (run by its CronJob)",
}


def build_parser(command: str | None = None, *, load_all: bool = False) -> argparse.ArgumentParser:
    """The argument parser with only the given subcommand's module loaded (fast start); without a known
    subcommand, a listing of them all that imports nothing (``load_all`` loads every module instead)."""
    parser = argparse.ArgumentParser(prog="dbops", description=dbops.__doc__)
    parser.add_argument("--version", action="version", version=f"dbops {dbops.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMAND_MODULES:
        modules = [COMMAND_MODULES[command]]
    elif load_all:
        modules = list(COMMAND_MODULES.values())
    else:
        for name, text in COMMAND_HELP.items():
            subparsers.add_parser(name, help=text, add_help=False)
        return parser
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = arguments[0] if arguments else None
    # Importing a command's modules (psycopg's alone are ~250) allocates objects that all stay: the cyclic
    # collector would scan them ~80 times over while importing, and again at every full collection after.
    # Collect nothing while importing, then keep them out of later collections (P6 start-up).
    gc.disable()
    try:
        parser = build_parser(command)
    finally:
        gc.freeze()
        gc.enable()
    args = parser.parse_args(arguments)
    code: int = args.run(args)
    return code


def check_arguments(argv: Sequence[str]) -> None:
    """Parse a runner command line as a Job would, and build its configuration, without running it.

    Raises InvalidSpecError naming the flag at fault: what the operator writes into a Job's args must pass this.
    A subcommand checks more than argparse does when it sets ``check`` (a function of the parsed arguments).
    """
    arguments = list(argv)
    parser = build_parser(arguments[0] if arguments else None)
    messages = io.StringIO()
    try:
        with contextlib.redirect_stderr(messages):
            args = parser.parse_args(arguments)
    except SystemExit:
        raise errors.InvalidSpecError(messages.getvalue().strip().splitlines()[-1]) from None
    check = getattr(args, "check", None)
    if check is not None:
        check(args)


# Commands whose process has nothing left to do once ``main`` returned: the result is written, files are closed
# by their ``with`` blocks, the database connection is closed and no thread is left. They end without tearing
# the interpreter down (P6: finalising the ~400 modules `dbops migrate apply` loads cost 30-50 ms of CPU after
# its work). Not ``migrate rehearse``, which restores a backup (storage clients may leave threads).
QUICK_EXIT_COMMANDS = frozenset({"migrate", "verify-db"})


def run() -> None:
    """Console-script entry point."""
    code = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT_COMMANDS and "rehearse" not in sys.argv[2:3]:
        exit_now(code)
    sys.exit(code)


def exit_now(code: int) -> None:
    """Flush what the process wrote (standard streams, logging handlers) and end it with ``code`` at once."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
