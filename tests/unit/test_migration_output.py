"""Result capping counts what it hides; SARIF/GitHub renderings of lint findings; squawk found beyond PATH."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from dbops.cli import migrate_output
from dbops.runner import result
from dbops.runner.migrations import lint


def finding(n: int) -> dict[str, object]:
    return {"version": f"{n:04d}", "rule": "prefer-robust-stmts", "level": "warning", "line": n,
            "message": f"finding number {n} with some words to make it longer", "file": f"{n:04d}_x.up.sql"}


def test_the_more_marker_counts_every_hidden_item() -> None:
    document = result.success("migrate plan", "ok", plan={"lint": [finding(n) for n in range(104)]})
    capped = json.loads(result.encode_result(document))
    shown = capped["plan"]["lint"]
    assert capped["truncated"] is True
    assert len(shown) - 1 + int(shown[-1].split()[1]) == 104


def test_sarif_and_annotations_point_at_the_files() -> None:
    document = result.success("migrate plan", "ok", plan={"lint": [finding(3)]})
    log = migrate_output.sarif(document, Path("db/migrations"))
    location = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "db/migrations/0003_x.up.sql"}, "region": {"startLine": 3}}
    assert log["runs"][0]["tool"]["driver"]["rules"] == [{"id": "prefer-robust-stmts"}]
    document["plan"]["lint"][0]["message"] = "a: b, 100%\nnext"
    (line,) = migrate_output.github_annotations(document, None)
    assert line == "::warning file=0003_x.up.sql,line=3,title=prefer-robust-stmts::a: b, 100%25%0Anext"


def test_sarif_uris_are_relative_to_the_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Regression: `--source $PWD/db/migrations` (as CI scripts pass it) gave absolute paths, which GitHub code
    scanning cannot place in the repository."""
    monkeypatch.chdir(tmp_path)
    document = result.success("migrate plan", "ok", plan={"lint": [finding(3)]})
    for source in (tmp_path / "db" / "migrations", Path("db/migrations"), Path("./db/migrations")):
        location = migrate_output.sarif(document, source)["runs"][0]["results"][0]["locations"][0]
        assert location["physicalLocation"]["artifactLocation"]["uri"] == "db/migrations/0003_x.up.sql"
        (line,) = migrate_output.github_annotations(document, source)
        assert line.startswith("::warning file=db/migrations/0003_x.up.sql,line=3,")
    outside = Path("/opt/elsewhere/migrations")
    uri = migrate_output.sarif(document, outside)["runs"][0]["results"][0]["locations"][0]
    assert uri["physicalLocation"]["artifactLocation"]["uri"] == "file:///opt/elsewhere/migrations/0003_x.up.sql"


def test_squawk_is_found_next_to_the_interpreter_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    found = lint.find_squawk()
    assert found is not None and Path(found).name == "squawk"
    assert Path(found).parent == Path(sys.executable).parent
