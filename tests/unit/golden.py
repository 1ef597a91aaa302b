"""Golden-file comparison for builder output: set DBOPS_UPDATE_GOLDEN=1 to rewrite the files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "specs"


def assert_matches_golden(name: str, manifest: Any) -> None:
    """Compare a manifest with ``tests/golden/specs/<name>.yaml``."""
    path = GOLDEN_DIR / f"{name}.yaml"
    rendered = yaml.safe_dump(manifest, sort_keys=True, default_flow_style=False)
    if os.environ.get("DBOPS_UPDATE_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered)
    assert yaml.safe_load(path.read_text()) == yaml.safe_load(rendered), f"{path} differs; review and regenerate"
