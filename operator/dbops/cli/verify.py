"""The `dbops verify` command (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `verify` subcommand."""
    parser = subparsers.add_parser("verify", help="not available yet")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    print("dbops verify: not implemented yet", file=sys.stderr)
    return 2
