"""The ``dbops api-reference`` command: write (or check) docs/api-reference.md, generated from the API models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HELP = "write the API reference generated from the API models"
DEFAULT_OUTPUT = Path("docs/api-reference.md")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``api-reference`` subcommand."""
    parser = subparsers.add_parser("api-reference", help=HELP)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="file to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="fail when the file differs from the models")
    parser.set_defaults(run=run)


def write(output: Path) -> bool:
    """Write the reference; False when it was already up to date."""
    from dbops.api import reference

    text = reference.render()
    if output.exists() and output.read_text() == text:
        return False
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    return True


def run(args: argparse.Namespace) -> int:
    """Write or check the reference."""
    from dbops.api import reference

    output: Path = args.output
    if args.check:
        if not output.exists() or output.read_text() != reference.render():
            print(f"{output} is out of date: run `dbops api-reference`", file=sys.stderr)
            return 1
        return 0
    write(output)
    print(f"wrote {output}")
    return 0
