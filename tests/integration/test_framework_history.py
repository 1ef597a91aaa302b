"""Command mode's framework history as the operator's Jobs record it: `migrate snapshot` (the command Job's init
container) before a real Django project's `migrate`, `verify-db --snapshot-run` after — Django rows added, an app
rolled back to zero, and an Alembic revision change — with the snapshot dropped afterwards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.migrate_support import dbops_env, run_dbops

from dbops_testbed.postgres import PostgresServer

MANAGE = Path(__file__).parent / "django_app" / "manage.py"


def django(server: PostgresServer, db: str, tmp_path: Path, *args: str) -> None:
    """Run manage.py as the command Job would: the user's command, the connection from our env."""
    subprocess.run([sys.executable, str(MANAGE), *args, "--noinput"], check=True, capture_output=True,
                   env=dbops_env(server, db, tmp_path / "unused.json"), timeout=300)


def around(server: PostgresServer, db: str, run: str, action: list[str], tmp_path: Path) -> tuple[int, dict, str]:
    code, doc, _ = run_dbops(server, db, "migrate", "snapshot", "--run", run)
    assert code == 0 and doc["recorded"] is True, doc
    django(server, db, tmp_path, *action)
    return run_dbops(server, db, "verify-db", "--builtin", "foreignKeys,invalidIndexes", "--snapshot-run", run)


def test_django_rows_added_and_removed_are_reported(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    code, doc, stderr = around(server, db, "rev-1", ["migrate"], tmp_path)
    assert code == 0, doc
    (django_history,) = doc["frameworkHistory"]
    assert django_history["framework"] == "django"
    assert django_history["addedCount"] == int(server.psql("SELECT count(*) FROM django_migrations", db))
    assert len(django_history["added"]) == min(django_history["addedCount"], 20)  # bounded (unit-tested)
    assert {"mentorship.0001_initial", "contenttypes.0001_initial"} <= set(django_history["added"]) \
        or "note" in django_history
    assert "mentorship.0002_booking_status" in stderr  # the complete list is in the log
    assert "django:" in doc["message"] and "applied" in doc["message"]
    assert server.psql("SELECT count(*) FROM dbops_framework_snapshots", db) == "0"

    code, doc, _ = around(server, db, "rev-2", ["migrate", "mentorship", "zero"], tmp_path)
    assert code == 0, doc
    (django_history,) = doc["frameworkHistory"]
    assert django_history["added"] == [] and django_history["removedCount"] == 2
    assert sorted(django_history["removed"]) == ["mentorship.0001_initial", "mentorship.0002_booking_status"]


def test_alembic_revision_before_and_after(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL PRIMARY KEY);"
                "INSERT INTO alembic_version VALUES ('ae1027a6acf')", db)
    code, doc, _ = run_dbops(server, db, "migrate", "snapshot", "--run", "rev-a", "--framework", "alembic")
    assert code == 0, doc
    server.psql("CREATE TABLE account (id serial PRIMARY KEY, name text);"
                "UPDATE alembic_version SET version_num = '1975ea83b712'", db)
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "foreignKeys", "--snapshot-run", "rev-a")
    assert code == 0, doc
    assert doc["frameworkHistory"] == [{"framework": "alembic", "before": "ae1027a6acf", "after": "1975ea83b712"}]
    assert "alembic: revision ae1027a6acf → 1975ea83b712" in doc["message"]


def test_without_a_snapshot_the_report_says_so(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    code, doc, _ = run_dbops(server, db, "verify-db", "--builtin", "foreignKeys", "--snapshot-run", "never-taken")
    assert code == 0, doc
    assert doc["frameworkHistory"][0]["framework"] == "unknown" and "no snapshot" in doc["frameworkHistory"][0]["note"]
