"""``dbops migrate rehearse``: the plan applied to a copy restored from a backup, with real figures, the scratch
database always dropped and the target never touched."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fixtures.cluster import wait_for
from tests.integration import datasets, migrate_support
from tests.integration.runner_cli import Run, run_dbops, runner_env, tools_path

from dbops_testbed.postgres import PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(600)
BOOKINGS = 200_000

# Foreign keys both ways (bookings → users from the dataset, users → their last booking here), a partitioned
# table and sequences; then rows changed after the first migration so the copy is not a fresh dataset.
FIRST = """
ALTER TABLE app.users ADD COLUMN last_booking_id integer REFERENCES app.bookings (id);
UPDATE app.users u SET last_booking_id = (SELECT max(b.id) FROM app.bookings b WHERE b.user_id = u.id);
"""
MIGRATIONS = {
    "0001_users_last_booking": (FIRST, None),
    # A type change rewrites the whole table under ACCESS EXCLUSIVE.
    "0002_bookings_ticket_bigint": ("ALTER TABLE app.bookings ALTER COLUMN ticket TYPE bigint;", None),
    "0003_happy_users": ("UPDATE app.users SET mood = 'happy' WHERE id % 3 = 0;", None),
    "0004_bookings_starts_index": ("CREATE INDEX bookings_starts_idx ON app.bookings (starts_at);", None),
    "0005_events_source": ("ALTER TABLE app.events ADD COLUMN source text;", None),
}


@pytest.fixture
def target(database: tuple[PostgresServer, str], tmp_path: Path) -> tuple[PostgresServer, str, Path]:
    """A database at version 0001 with its backup taken afterwards (and rows changed since)."""
    server, dbname = database
    datasets.create_dataset(server, dbname, users=2000, bookings=BOOKINGS, events=3000)
    source = migrate_support.write_migrations(tmp_path / "first", dict(list(MIGRATIONS.items())[:1]))
    run = rehearse_run(server, dbname, tmp_path, ["migrate", "apply", "--source", str(source),
                                                  "--baseline-version", "0000", "--no-lint"])
    assert run.code == 0, run.output
    server.psql("INSERT INTO app.bookings (user_id, amount, starts_at) VALUES (1, 9.5, now())", dbname)
    backup = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "store"), "--name", "nightly"],
                       runner_env(server), tmp_path)
    assert backup.code == 0, backup.output
    return server, dbname, tmp_path / "store" / "local" / dbname / "nightly"


def rehearse_run(server: PostgresServer, dbname: str, workdir: Path, args: list[str]) -> Run:
    """``dbops migrate …`` with the target in DBOPS_DATABASE_URI, as in a Job."""
    code, document, stderr = migrate_support.run_dbops(server, dbname, *args,
                                                       env={"DBOPS_PG_BIN_DIR": tools_path()}, timeout=400)
    return Run(code, "", stderr, document)


def rehearse(server: PostgresServer, dbname: str, workdir: Path, backup: Path, migrations: dict[str, Any],
             *extra: str) -> Run:
    source = migrate_support.write_migrations(workdir / "src", migrations)
    return rehearse_run(server, dbname, workdir, ["migrate", "rehearse", "--source", str(source), "--from",
                                                  str(backup), "--no-lint", "--verify", *extra])


def recorded_size(backup: Path) -> int:
    """The database size the backup's manifest recorded (the copy's expected size)."""
    return int(json.loads((backup / "manifest.json").read_text())["databaseSizeBytes"])


def scratch_databases(server: PostgresServer) -> list[str]:
    return server.psql("SELECT datname FROM pg_database WHERE datname LIKE 'dbops\\_rehearsal\\_%'").split()


def target_state(server: PostgresServer, dbname: str) -> tuple[str, str, str]:
    return (migrate_support.history_rows(server, dbname), migrate_support.schema_dump(server, dbname),
            server.psql("SELECT count(*), sum(ticket), count(*) FILTER (WHERE mood = 'happy') FROM app.bookings "
                        "JOIN app.users u ON u.id = user_id", dbname))


def by_version(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["version"]: row for row in report["migrations"] if isinstance(row, dict)}


def test_rehearsal_reports_real_locks_rows_and_sizes_and_leaves_nothing(
        target: tuple[PostgresServer, str, Path], tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)

    run = rehearse(server, dbname, tmp_path, backup, MIGRATIONS)

    assert run.code == 0, run.output
    report = run.result["rehearsal"]
    assert report["outcome"] == "Passed" and report["scratchDropped"] is True, report
    assert report["planHash"] and report["backup"] == "nightly" and report["restoreMs"] > 0
    # No space declared: the report says so rather than implying a check passed.
    assert report["copyBytes"] == recorded_size(backup) > 5 * 1024 * 1024
    assert report["spaceCheck"].startswith("not checked") and "availableSpace" in report["spaceCheck"], report
    rows = by_version(report)
    assert sorted(rows) == ["0002", "0003", "0004", "0005"]
    rewrite = rows["0002"]
    locked = {lock["table"]: lock for lock in rewrite["exclusiveLocks"]}
    assert "app.bookings" in locked, rewrite
    assert locked["app.bookings"]["tableBytes"] > 5 * 1024 * 1024 and locked["app.bookings"]["heldMs"] > 0
    assert report["largestExclusiveLock"]["table"] == "app.bookings"
    happy = int(server.psql("SELECT count(*) FROM app.users WHERE id % 3 = 0", dbname))
    assert rows["0003"]["rowsUpdated"] == happy and rows["0003"]["rowsInserted"] == 0
    assert not any(lock["table"] == "app.bookings" for lock in rows["0004"]["exclusiveLocks"])
    index_change = {change["table"]: change for change in rows["0004"]["sizeChanges"]}["app.bookings"]
    assert index_change["indexBytes"][1] > index_change["indexBytes"][0]
    # ADD COLUMN on a partitioned table locks the parent and every partition, briefly.
    assert {"app.events", "app.events_2025", "app.events_2026"} <= {lock["table"]
                                                                   for lock in rows["0005"]["exclusiveLocks"]}
    assert {check["name"] for check in report["verification"]} >= {"foreignKeys", "invalidIndexes"}
    assert scratch_databases(server) == []
    assert target_state(server, dbname) == before


def test_failed_rehearsal_drops_the_copy_and_leaves_the_target(
        target: tuple[PostgresServer, str, Path], tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)
    failing = {**dict(list(MIGRATIONS.items())[:3]),
               "0004_unique_starts": ("CREATE UNIQUE INDEX bookings_user_once ON app.bookings (user_id);", None)}

    run = rehearse(server, dbname, tmp_path, backup, failing)

    assert run.code == 2, run.output
    assert run.result["reason"] == "RehearsalFailed" and "restored copy" in run.result["message"]
    assert "0004_unique_starts" in run.result["message"] and "could not create unique index" in run.result["message"]
    report = run.result["rehearsal"]
    assert report["outcome"] == "Failed" and report["scratchDropped"] is True
    assert by_version(report)["0004"]["failed"] is True and "failed" not in by_version(report)["0003"]
    assert scratch_databases(server) == []
    assert target_state(server, dbname) == before



def test_verification_failing_on_the_copy_fails_the_rehearsal_and_leaves_the_target(
        target: tuple[PostgresServer, str, Path], tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)
    # Every migration applies, but one leaves an orphan behind a NOT VALID foreign key: the verification after
    # the migrations (foreign keys, orphan count) fails on the copy.
    orphaned = {**dict(list(MIGRATIONS.items())[:3]), "0004_booking_notes": (
        "CREATE TABLE app.booking_notes (id int PRIMARY KEY, booking_id integer, body text);\n"
        "INSERT INTO app.booking_notes VALUES (1, -1, 'points nowhere');\n"
        "ALTER TABLE app.booking_notes ADD CONSTRAINT booking_notes_booking_fk FOREIGN KEY (booking_id) "
        "REFERENCES app.bookings (id) NOT VALID;", None)}

    run = rehearse(server, dbname, tmp_path, backup, orphaned)

    assert run.code == 1, run.output
    assert run.result["reason"] == "RehearsalVerificationFailed", run.result
    assert "restored copy" in run.result["message"] and "foreignKeys" in run.result["message"]
    assert "booking_notes_booking_fk" in run.result["message"], run.result["message"]
    report = run.result["rehearsal"]
    assert report["outcome"] == "Failed" and report["scratchDropped"] is True, report
    assert sorted(by_version(report)) == ["0002", "0003", "0004"]
    assert not any(row.get("failed") for row in report["migrations"])
    assert {check["name"]: check["passed"] for check in report["verification"]}["foreignKeys"] is False
    assert scratch_databases(server) == []
    assert target_state(server, dbname) == before
    assert server.psql("SELECT to_regclass('app.booking_notes') IS NULL", dbname) == "t"

def test_gates_stop_on_a_large_exclusive_lock_and_on_a_stale_backup(
        target: tuple[PostgresServer, str, Path], tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)

    run = rehearse(server, dbname, tmp_path, backup, MIGRATIONS, "--max-exclusive-lock-table-bytes", str(1 << 20))

    assert run.code == 1, run.output
    assert run.result["reason"] == "RehearsalLockedLargeTable"
    assert "app.bookings" in run.result["message"] and "0002_bookings_ticket_bigint" in run.result["message"]
    assert run.result["rehearsal"]["outcome"] == "Blocked"
    assert scratch_databases(server) == [] and target_state(server, dbname) == before

    # Longer than the window: the migrations' time on the copy counts, not the restore's.
    slow = {"0002_slow_backfill": ("SELECT pg_sleep(1.5);", None)}
    run = rehearse(server, dbname, tmp_path / "slow", backup, slow, "--max-duration", "1s")
    assert run.code == 1 and run.result["reason"] == "RehearsalExceededWindow", run.output
    assert run.result["rehearsal"]["durationMs"] >= 1500 and "longer than the 1s allowed" in run.result["message"]
    assert scratch_databases(server) == [] and target_state(server, dbname) == before

    # The database moved on after the backup: the copy would rehearse another plan.
    stale = migrate_support.write_migrations(tmp_path / "two", dict(list(MIGRATIONS.items())[:2]))
    assert rehearse_run(server, dbname, tmp_path, ["migrate", "apply", "--source", str(stale), "--no-lint"]).code == 0
    plan = rehearse_run(server, dbname, tmp_path, ["migrate", "plan", "--source", str(tmp_path / "src"), "--no-lint"])
    run = rehearse(server, dbname, tmp_path, backup, MIGRATIONS, "--expect-plan-hash", plan.result["plan"]["hash"])
    assert run.code == 2 and run.result["reason"] == "RehearsalPlanMismatch", run.output
    assert "take a new backup" in run.result["message"]
    assert scratch_databases(server) == []


def test_a_killed_rehearsal_leaves_its_copy_and_the_next_one_drops_it(
        target: tuple[PostgresServer, str, Path], tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)
    scratch = "dbops_rehearsal_killed"
    source = migrate_support.write_migrations(tmp_path / "slow", {"0002_slow": ("SELECT pg_sleep(120);", None)})
    env = {**migrate_support.dbops_env(server, dbname, tmp_path / "killed.json"), "DBOPS_PG_BIN_DIR": tools_path()}
    process = subprocess.Popen([*migrate_support.DBOPS, "migrate", "rehearse", "--source", str(source), "--from",
                                str(backup), "--no-lint", "--scratch-database", scratch],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{scratch}' "
                                     "AND query LIKE '%pg_sleep(120)%'") == "1",
                 timeout=240, interval=0.2, message="the rehearsal to reach its migration")
    finally:
        process.kill()  # SIGKILL: no finally block of the runner runs
        process.wait(timeout=30)
    assert scratch_databases(server) == [scratch]  # what a killed runner leaves on the server

    run = rehearse(server, dbname, tmp_path, backup, dict(list(MIGRATIONS.items())[:3]), "--scratch-database", scratch)

    assert run.code == 0, run.output
    assert run.result["rehearsal"]["scratchDatabase"] == scratch and run.result["rehearsal"]["scratchDropped"]
    assert scratch_databases(server) == [] and target_state(server, dbname) == before


def test_a_role_without_createdb_is_refused_by_name_before_any_copy(
        target: tuple[PostgresServer, str, Path], tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)
    role, password = "app_no_createdb", "pw-app-no-createdb"
    server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOCREATEDB; GRANT pg_read_all_data TO {role}")
    source = migrate_support.write_migrations(tmp_path / "src", MIGRATIONS)

    code, document, stderr = migrate_support.run_dbops(
        server, dbname, "migrate", "rehearse", "--source", str(source), "--from", str(backup), "--no-lint",
        env={"DBOPS_PG_BIN_DIR": tools_path(), "DBOPS_DATABASE_URI": server.uri(dbname, user=role, password=password)},
        timeout=400)

    assert code == 2, stderr
    assert document["reason"] == "RehearsalInsufficientPrivileges", document
    assert f'role "{role}"' in document["message"] and "CREATEDB" in document["message"], document
    assert document["rehearsal"]["scratchDropped"] is True
    assert password not in json.dumps(document) + stderr
    assert scratch_databases(server) == [] and target_state(server, dbname) == before


def test_the_copy_must_fit_twice_in_the_declared_space(target: tuple[PostgresServer, str, Path],
                                                       tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)
    size = recorded_size(backup)

    run = rehearse(server, dbname, tmp_path, backup, MIGRATIONS, "--available-space-bytes", str(2 * size - 1))

    assert run.code == 2, run.output
    assert run.result["reason"] == "RehearsalInsufficientSpace", run.result
    assert "not enough space" in run.result["message"] and "backup nightly" in run.result["message"]
    report = run.result["rehearsal"]
    assert report["copyBytes"] == size and report["spaceCheck"].startswith("failed"), report
    assert report["restoreMs"] == 0 and report["migrations"] == []  # refused before restoring anything
    assert scratch_databases(server) == [] and target_state(server, dbname) == before

    run = rehearse(server, dbname, tmp_path / "fits", backup, MIGRATIONS, "--available-space-bytes", str(2 * size))

    assert run.code == 0, run.output
    assert run.result["rehearsal"]["spaceCheck"].startswith("passed"), run.result["rehearsal"]
    assert scratch_databases(server) == [] and target_state(server, dbname) == before


@pytest.fixture
def staging(pg_server: PostgresServer) -> Iterator[PostgresServer]:
    """A separate server on the other supported major (its own password): newer than a PG 15 target, older than
    a PG 18 one."""
    with running_postgres(18 if pg_server.major == 15 else 15, password="staging-only-pw") as server:
        yield server


def test_rehearsal_on_a_staging_server_never_creates_the_copy_on_the_target_server(
        target: tuple[PostgresServer, str, Path], staging: PostgresServer, tmp_path: Path) -> None:
    server, dbname, backup = target
    before = target_state(server, dbname)
    # The target's role cannot create databases: a copy made on the target's server would fail outright.
    role, password = "app_target_only", "pw-app-target-only"
    server.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' NOCREATEDB; GRANT pg_read_all_data TO {role}")
    on_staging = ("DO $$ BEGIN IF current_setting('port')::int <> " + str(staging.port)
                  + " THEN RAISE EXCEPTION 'rehearsed on port %', current_setting('port'); END IF; END $$;")
    source = migrate_support.write_migrations(
        tmp_path / "src", {**dict(list(MIGRATIONS.items())[:3]), "0004_on_staging": (on_staging, None)})
    env = {"DBOPS_PG_BIN_DIR": tools_path(), "DBOPS_DATABASE_URI": server.uri(dbname, user=role, password=password),
           "DBOPS_REHEARSAL_DATABASE_URI": staging.uri("postgres")}

    code, document, stderr = migrate_support.run_dbops(
        server, dbname, "migrate", "rehearse", "--source", str(source), "--from", str(backup), "--no-lint",
        "--verify", "--server-from-env", env=env, timeout=400)

    assert password not in json.dumps(document) + stderr and staging.password not in json.dumps(document) + stderr
    report = document.get("rehearsal", {})
    assert report.get("server") == f"{staging.host}:{staging.port}", document
    if staging.major < server.major:
        # A PostgreSQL 18 dump does not restore into 15: refused before anything is created, on either server.
        assert code == 2 and document["reason"] == "RehearsalServerMismatch", document
        assert "PostgreSQL 18" in document["message"] and "PostgreSQL 15" in document["message"]
    else:
        assert code == 0, (document, stderr)
        assert report["outcome"] == "Passed" and sorted(by_version(report)) == ["0002", "0003", "0004"], report
        assert report["warnings"] and "PostgreSQL 18" in report["warnings"][0], report
        assert report["scratchDropped"] is True
    assert scratch_databases(staging) == [] and scratch_databases(server) == []
    assert target_state(server, dbname) == before
