"""The `dbops migrate` command (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `migrate` subcommand."""
    parser = subparsers.add_parser("migrate", help="not available yet")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    print("dbops migrate: not implemented yet", file=sys.stderr)
    return 2
