"""The ``dbops crds`` command: write (or check) the generated CustomResourceDefinitions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dbops.api import crd
from dbops.cli import manifests, reference


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``crds`` subcommand."""
    parser = subparsers.add_parser("crds", help="write the CRDs generated from the API models")
    parser.add_argument("--output", type=Path, default=Path("crds"), help="directory to write (default: crds)")
    parser.add_argument("--check", action="store_true", help="fail when the files differ from the models")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write or check the CRD files."""
    rendered = crd.render_crds()
    output: Path = args.output
    if args.check:
        stale = [name for name, text in rendered.items()
                 if not (output / name).exists() or (output / name).read_text() != text]
        if stale:
            print(f"CRDs out of date: {', '.join(stale)}; run `dbops crds`", file=sys.stderr)
            return 1
        return 0
    output.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (output / name).write_text(text)
        print(f"wrote {output / name}")
    if output == Path("crds") and manifests.CHART_DIR.is_dir():
        # In the repository root: refresh the copies in the chart and the kustomization too.
        for path in manifests.write_files(Path(".")):
            print(f"wrote {path}")
        if reference.write(reference.DEFAULT_OUTPUT):  # the field descriptions it shows are the CRDs' too
            print(f"wrote {reference.DEFAULT_OUTPUT}")
    return 0
