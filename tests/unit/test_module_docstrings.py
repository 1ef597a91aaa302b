"""Every module of dbops opens with a one-line docstring (the style guide's rule), shorter than 120 columns."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "dbops"
MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_docstring_summary_is_one_line(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source), clean=False)
    assert docstring, f"{path.relative_to(PACKAGE)} has no module docstring"
    summary = docstring.split("\n\n", 1)[0]
    assert "\n" not in summary.strip(), f"the summary wraps onto a second line: {summary!r}"
    # The line as written: three quotes, the summary, and closing quotes when it is the whole docstring.
    first_line = source.lstrip().splitlines()[0]
    assert len(first_line) < 120, f"{len(first_line)} columns: {first_line!r}"
