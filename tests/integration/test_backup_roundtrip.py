"""Backup → verify → restore round trips through a local directory, on PostgreSQL 15 and 18."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration import datasets
from tests.integration.runner_cli import finished, popen_dbops, run_dbops, runner_env, tools_path

from dbops_testbed.postgres import PostgresServer


def _round_trip(server: PostgresServer, source: str, tmp_path: Path, env: dict[str, str], *backup_args: str) -> str:
    storage = tmp_path / "store"
    backup = run_dbops(["backup", "--dbname", source, "--storage", str(storage), "--name", "b1", *backup_args],
                       env, tmp_path)
    assert backup.code == 0, backup.stderr
    folder = storage / "local" / source / "b1"
    verify = run_dbops(["verify", "--from", str(folder)], env, tmp_path)
    assert verify.code == 0, verify.stderr
    assert verify.result["verification"]["decoded"] is True
    target = f"{source}_copy"
    restore = run_dbops(["restore", "--from", str(folder / "manifest.json"), "--dbname", target, "--create"],
                        env, tmp_path)
    assert restore.code == 0, restore.stderr
    assert restore.result["verification"]["rowCounts"]["passed"] is True
    assert restore.result["verification"]["rowCounts"]["tablesCompared"] == len(datasets.TABLES)
    return target


def test_round_trip_preserves_schema_and_data(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    datasets.create_dataset(server, source)
    env = runner_env(server)
    target = _round_trip(server, source, tmp_path, env)
    try:
        assert datasets.schema_dump(server, target) == datasets.schema_dump(server, source)
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
    finally:
        server.drop_database(target)


def test_manifest_is_written_last_with_objects_versions_and_row_counts(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=120, bookings=700)
    storage = tmp_path / "store"
    run = run_dbops(["backup", "--dbname", source, "--storage", str(storage), "--name", "nightly",
                     "--namespace", "prod"], runner_env(server), tmp_path)
    assert run.code == 0, run.stderr
    folder = storage / "prod" / source / "nightly"
    assert sorted(p.name for p in folder.iterdir()) == ["dump.zst", "manifest.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "custom" and manifest["codec"] == "zstd"
    assert manifest["objects"][0]["name"] == "dump.zst"
    assert manifest["objects"][0]["sizeBytes"] == (folder / "dump.zst").stat().st_size
    assert manifest["serverVersion"].startswith(str(server.major))
    rows = {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]}
    assert rows["app.users"] == 120 and rows["app.bookings"] == 700
    assert manifest["startedAt"] <= manifest["completedAt"]
    artifact = run.result["artifact"]
    assert artifact["uri"] == (folder / "dump.zst").as_uri()
    assert artifact["manifestUri"] == (folder / "manifest.json").as_uri()
    assert artifact["sha256"] == manifest["objects"][0]["sha256"]
    assert run.result["source"]["tableCount"] == len(datasets.TABLES)
    assert run.result["source"]["databaseSizeBytes"] > 0
    again = run_dbops(["backup", "--dbname", source, "--storage", str(storage), "--name", "nightly",
                       "--namespace", "prod"], runner_env(server), tmp_path)
    assert again.code == 2 and again.result["reason"] == "AlreadyExists"


def test_a_run_with_the_same_run_id_reports_the_committed_backup_instead_of_dumping_again(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    # The operator starts a backup Job again when the first one vanished with its result (deleted, or removed by a
    # ttl): the run must report what the first one committed, and only for the same DatabaseBackup (its uid).
    server, source = database
    datasets.create_dataset(server, source, users=40, bookings=90, events=30)
    storage = tmp_path / "store"
    args = ["backup", "--dbname", source, "--storage", str(storage), "--name", "nightly", "--namespace", "prod"]
    first = run_dbops([*args, "--run-id", "uid-1"], runner_env(server), tmp_path)
    assert first.code == 0, first.stderr
    manifest = storage / "prod" / source / "nightly" / "manifest.json"
    committed = manifest.read_bytes()
    assert json.loads(committed)["runId"] == "uid-1"
    server.psql("INSERT INTO app.users (email) VALUES ('late@example.com')", source)
    again = run_dbops([*args, "--run-id", "uid-1"], runner_env(server), tmp_path)
    assert again.code == 0, again.stderr
    assert again.result["adopted"] is True and "committed earlier" in again.result["message"]
    assert again.result["artifact"] == first.result["artifact"]
    assert again.result["source"] == first.result["source"]
    assert manifest.read_bytes() == committed, "the committed backup was touched"
    for other in (["--run-id", "uid-2"], []):
        refused = run_dbops([*args, *other], runner_env(server), tmp_path)
        assert refused.code == 2 and refused.result["reason"] == "AlreadyExists", refused.stderr
    assert manifest.read_bytes() == committed


@pytest.mark.parametrize("codec", ["gzip", "none"])
def test_other_codecs_round_trip(database: tuple[PostgresServer, str], tmp_path: Path, codec: str) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=50, bookings=200, events=100)
    target = _round_trip(server, source, tmp_path, runner_env(server), "--compression", codec)
    try:
        suffix = {"gzip": ".gz", "none": ""}[codec]
        assert (tmp_path / "store" / "local" / source / "b1" / f"dump{suffix}").is_file()
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
    finally:
        server.drop_database(target)


@pytest.mark.parametrize(("backup_args", "restore_args"), [
    ((), ()), ((), ("--jobs", "2")), (("--format", "plain"), ()),
], ids=["custom", "custom-jobs2", "plain"])
def test_newer_tools_than_the_server_round_trip(
    database: tuple[PostgresServer, str], tmp_path: Path, backup_args: tuple[str, ...],
    restore_args: tuple[str, ...],
) -> None:
    """pg_dump/pg_restore/psql 18 against each server (their scripts set transaction_timeout, unknown before 17)."""
    server, source = database
    datasets.create_dataset(server, source, users=50, bookings=200, events=100)
    env = runner_env(server, DBOPS_PG_BIN_DIR=tools_path(newest_only=True))
    storage = tmp_path / "store"
    backup = run_dbops(["backup", "--dbname", source, "--storage", str(storage), "--name", "b", *backup_args],
                       env, tmp_path)
    assert backup.code == 0, backup.stderr
    target = f"{source}_new_tools"
    restore = run_dbops(["restore", "--from", str(storage / "local" / source / "b"), "--dbname", target,
                         "--create", *restore_args], env, tmp_path)
    try:
        assert restore.code == 0, restore.stderr
        assert datasets.schema_dump(server, target) == datasets.schema_dump(server, source)
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
    finally:
        server.drop_database(target)


def test_two_runs_of_the_same_local_backup_commit_exactly_one(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=3000, bookings=30000, events=5000)
    env = runner_env(server)
    args = ["backup", "--dbname", source, "--storage", str(tmp_path / "s"), "--name", "same"]
    processes = [(popen_dbops(args, env, tmp_path / f"r{i}.json"), tmp_path / f"r{i}.json") for i in range(2)]
    runs = [finished(p, *p.communicate(timeout=300), path) for p, path in processes]
    # At most one run succeeds; a loser says why (both may fail when they overwrite each other's dump).
    assert [run.code for run in runs].count(0) <= 1, [run.stderr for run in runs]
    for loser in (run for run in runs if run.code != 0):
        assert loser.result["reason"] in ("AlreadyExists", "ConcurrentRun"), loser.stderr
    folder = tmp_path / "s" / "local" / source / "same"
    assert (folder / "manifest.json").exists() == (0 in [run.code for run in runs])
    if not (folder / "manifest.json").exists():
        return
    assert sorted(p.name for p in folder.iterdir()) == ["dump.zst", "manifest.json"]
    assert run_dbops(["verify", "--from", str(folder)], env, tmp_path).code == 0
