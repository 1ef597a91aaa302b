"""Table-mode restore: the runbook's partial restore of damaged tables, leaving other tables alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration import datasets
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.postgres import PostgresServer

DAMAGE = """
DELETE FROM app.bookings WHERE id % 3 = 0;
UPDATE app.users SET profile = '{"damaged": true}', mood = 'sad' WHERE id % 2 = 0;
INSERT INTO app.users (email) VALUES ('intruder@example.org');
SELECT nextval('app.ticket_seq');
UPDATE public.documents SET title = 'changed after the backup';
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_table_restore_repairs_damaged_tables_only(
    database: tuple[PostgresServer, str], tmp_path: Path, jobs: int
) -> None:
    server, dbname = database
    datasets.create_dataset(server, dbname)
    env = runner_env(server)
    backup = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s"), "--name", "before"],
                       env, tmp_path)
    assert backup.code == 0, backup.stderr
    schema_before = datasets.schema_dump(server, dbname)
    sums_before = datasets.table_checksums(server, dbname)
    server.psql(DAMAGE, dbname)
    damaged = datasets.table_checksums(server, dbname)
    assert damaged["app.users"] != sums_before["app.users"]

    run = run_dbops(["restore", "--from", str(tmp_path / "s" / "local" / dbname / "before"), "--dbname", dbname,
                     "--mode", "tables", "--table", "app.users", "--table", "bookings", "--jobs", str(jobs),
                     "--confirm-overwrite", dbname],
                    env, tmp_path)
    assert run.code == 0, run.stderr
    assert run.result["tablesRestored"] == 2
    assert run.result["verification"]["rowCounts"] == {"passed": True, "tablesCompared": 2, "mismatches": []}

    after = datasets.table_checksums(server, dbname)
    for table in ("app.users", "app.bookings", "app.users_id_seq", "app.bookings_id_seq"):
        assert after[table] == sums_before[table], table
    # Tables that were not named keep their (changed) state.
    assert after["public.documents"] == damaged["public.documents"] != sums_before["public.documents"]
    assert after["app.ticket_seq"] == damaged["app.ticket_seq"]
    assert datasets.schema_dump(server, dbname) == schema_before


def test_unknown_table_is_refused_before_anything_changes(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, dbname = database
    datasets.create_dataset(server, dbname, users=20, bookings=40, events=10)
    env = runner_env(server)
    assert run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s"), "--name", "b"],
                     env, tmp_path).code == 0
    run = run_dbops(["restore", "--from", str(tmp_path / "s" / "local" / dbname / "b"), "--dbname", dbname,
                     "--mode", "tables", "--table", "app.nope", "--confirm-overwrite", dbname], env, tmp_path)
    assert run.code == 2
    assert "table 'app.nope' is not in backup b" in run.result["message"]
