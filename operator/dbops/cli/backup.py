"""The `dbops backup` command (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `backup` subcommand."""
    parser = subparsers.add_parser("backup", help="not available yet")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    print("dbops backup: not implemented yet", file=sys.stderr)
    return 2
