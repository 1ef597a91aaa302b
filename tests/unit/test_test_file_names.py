"""Test files have unique basenames: pytest's default import mode imports each by basename, so a twin fails."""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_every_test_file_basename_is_unique() -> None:
    names = collections.Counter(path.name for path in TESTS.rglob("test_*.py"))
    twins = sorted(name for name, count in names.items() if count > 1)
    assert not twins, f"test files sharing a basename (one fails to collect): {twins}"
