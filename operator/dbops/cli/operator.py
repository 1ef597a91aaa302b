"""The `dbops operator` command (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `operator` subcommand."""
    parser = subparsers.add_parser("operator", help="not available yet")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    print("dbops operator: not implemented yet", file=sys.stderr)
    return 2
