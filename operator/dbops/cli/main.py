"""The ``dbops`` command: one entry point for the operator, the runner commands and CRD generation."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
from collections.abc import Sequence

import dbops
from dbops import errors

# Subcommand → the module that registers it. Each module defines ``register(subparsers)``, which adds its
# subcommand(s) with ``set_defaults(run=...)``; ``run(args) -> int`` returns the process exit code.
COMMAND_MODULES = {
    "crds": "dbops.cli.crds",
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: with only the given subcommand's module loaded (fast Job start), or all of them."""
    parser = argparse.ArgumentParser(prog="dbops", description=dbops.__doc__)
    parser.add_argument("--version", action="version", version=f"dbops {dbops.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = arguments[0] if arguments else None
    parser = build_parser(command)
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


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
