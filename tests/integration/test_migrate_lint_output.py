"""Lint a reviewer can trust: `migrate plan` honours --lint-fail-on, findings are never cut silently (full
result on stdout and in --output; the capped result says where), SARIF and GitHub annotations for CI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.migrate_support import DBOPS, dbops_env, run_dbops, write_migrations

from dbops_testbed.postgres import PostgresServer

# Every table without a primary key and with a plain int, varchar and timestamp: several warnings each.
WIDE = {f"{n:04d}_table_{n}": (f"CREATE TABLE t{n} (id int, label varchar(20), at timestamp);\n"
                               f"ALTER TABLE t{n} ADD COLUMN flag boolean NOT NULL DEFAULT false;\n"
                               f"ALTER TABLE t{n} ALTER COLUMN label TYPE text;", None)
        for n in range(1, 31)}


def cli(server: PostgresServer, db: str, tmp_path: Path, *args: str,
        cwd: Path | None = None) -> tuple[int, str, dict[str, object]]:
    result_path = tmp_path / "result.json"
    completed = subprocess.run([*DBOPS, *args], env=dbops_env(server, db, result_path), capture_output=True,
                               text=True, timeout=300, check=False, cwd=cwd)
    capped = json.loads(result_path.read_text())
    assert len(json.dumps(capped, separators=(",", ":")).encode()) <= 4096
    return completed.returncode, completed.stdout, capped


def test_plan_honours_lint_fail_on(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_users": ("CREATE TABLE users (id bigint PRIMARY KEY);", None),
                                            "0002_drop": ("ALTER TABLE users DROP COLUMN id;", None)})
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src), "--lint-fail-on", "warning")
    assert code == 2 and doc["reason"] == "LintFailed", doc
    assert "ban-drop-column" in doc["message"] and doc["plan"]["pending"] == ["0001", "0002"]
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src), "--lint-fail-on", "none")
    assert code == 0, doc


def test_many_findings_are_complete_outside_the_capped_result(database: tuple[PostgresServer, str],
                                                              tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", WIDE)
    out = tmp_path / "plan.json"
    code, stdout, capped = cli(server, db, tmp_path, "migrate", "plan", "--source", str(src), "--lint-fail-on",
                               "none", "--lint-exclude", "", "--output", str(out))
    assert code == 0, capped
    full = json.loads(out.read_text())
    assert json.loads(stdout) == full
    total = len(full["plan"]["lint"])
    assert total > 60
    assert capped["truncated"] is True and capped["fullResult"] == str(out)
    assert str(out) in capped["message"]
    shown = capped["plan"]["lint"]  # type: ignore[index]
    marker = shown[-1]
    assert isinstance(marker, str) and marker.startswith("... ")
    assert len(shown) - 1 + int(marker.split()[1]) == total  # the "… N more" count adds up


def test_sarif_and_github_formats(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = write_migrations(tmp_path / "m", {"0001_users": ("CREATE TABLE users (id bigint PRIMARY KEY);", None),
                                            "0002_index": ("CREATE INDEX CONCURRENTLY u ON users (id);", None)})
    # Run where a CI job runs, at the checkout's root: paths come out relative to it, as code scanning needs.
    code, stdout, capped = cli(server, db, tmp_path, "migrate", "plan", "--source", str(src), "--format", "sarif",
                               cwd=tmp_path)
    assert code == 2 and capped["reason"] == "LintFailed"
    log = json.loads(stdout)
    assert log["version"] == "2.1.0"
    results = log["runs"][0]["results"]
    ours = [r for r in results if r["ruleId"] == "dbops-needs-no-transaction"]
    assert len(ours) == 1 and ours[0]["level"] == "error"
    location = ours[0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "m/0002_index.up.sql"
    assert location["region"]["startLine"] == 1
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False
    code, stdout, _ = cli(server, db, tmp_path, "migrate", "plan", "--source", str(src), "--format", "github",
                          cwd=tmp_path)
    assert code == 2
    lines = stdout.splitlines()
    assert any(line.startswith("::error file=m/0002_index.up.sql,line=1,title=dbops-needs-no-transaction::")
               for line in lines), lines
    assert lines[-1].startswith("::error title=LintFailed::")
