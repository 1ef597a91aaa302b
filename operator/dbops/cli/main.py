"""The ``dbops`` command: one entry point for the operator, the runner commands and CRD generation."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import dbops

# Each module defines ``register(subparsers)``; it adds its subcommand with ``set_defaults(run=...)``,
# where ``run(args) -> int`` returns the process exit code.
COMMAND_MODULES = (
    "dbops.cli.crds",
    "dbops.cli.operator",
    "dbops.cli.backup",
    "dbops.cli.restore",
    "dbops.cli.verify",
    "dbops.cli.migrate",
    "dbops.cli.check",
    "dbops.cli.trigger",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="dbops", description=dbops.__doc__)
    parser.add_argument("--version", action="version", version=f"dbops {dbops.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
