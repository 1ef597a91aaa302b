"""Backup scopes (schema-only, data-only, critical tables, excluded data) and the directory format."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration import datasets
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.postgres import PostgresServer


def _backup(server: PostgresServer, dbname: str, tmp_path: Path, name: str, *args: str) -> Path:
    run = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s"), "--name", name, *args],
                    runner_env(server), tmp_path)
    assert run.code == 0, run.stderr
    return tmp_path / "s" / "local" / dbname / name


def _rows(folder: Path) -> dict[str, int | None]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]}


def test_schema_only_then_data_only_rebuild_the_database(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=80, bookings=300, events=90)
    schema = _backup(server, source, tmp_path, "schema", "--schema-only")
    data = _backup(server, source, tmp_path, "data", "--data-only")
    assert set(_rows(schema).values()) == {None}
    assert _rows(data)["app.users"] == 80
    env = runner_env(server)
    target = f"{source}_rebuilt"
    try:
        first = run_dbops(["restore", "--from", str(schema), "--dbname", target, "--create", "--mode", "schema-only"],
                          env, tmp_path)
        assert first.code == 0, first.stderr
        assert server.psql("SELECT count(*) FROM app.users", target) == "0"
        second = run_dbops(["restore", "--from", str(data), "--dbname", target, "--mode", "data-only"], env, tmp_path)
        assert second.code == 0, second.stderr
        assert second.result["verification"]["rowCounts"]["passed"] is True
        # REFRESH MATERIALIZED VIEW is post-data: neither a schema-only nor a data-only dump carries it.
        server.psql("REFRESH MATERIALIZED VIEW app.mood_counts", target)
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
        assert datasets.schema_dump(server, target) == datasets.schema_dump(server, source)
    finally:
        server.drop_database(target)


def test_critical_tables_and_excluded_data(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=40, bookings=100, events=30)
    critical = _backup(server, source, tmp_path, "critical", "--table", "app.users", "--table", "app.bookings")
    assert _rows(critical) == {"app.users": 40, "app.bookings": 100}
    slim = _backup(server, source, tmp_path, "slim", "--exclude-table-data", "app.events_*",
                   "--exclude-schema", "public")
    rows = _rows(slim)
    assert rows["app.events_2025"] is None and rows["app.users"] == 40
    assert "public.documents" not in rows
    target = f"{source}_slim"
    try:
        run = run_dbops(["restore", "--from", str(slim), "--dbname", target, "--create"], runner_env(server), tmp_path)
        assert run.code == 0, run.stderr
        assert server.psql("SELECT count(*) FROM app.events", target) == "0"
        assert server.psql("SELECT count(*) FROM app.users", target) == "40"
        assert server.psql("SELECT to_regclass('public.documents') IS NULL", target) == "t"
    finally:
        server.drop_database(target)


def test_directory_format_with_parallel_dump_and_restore(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    datasets.create_dataset(server, source)
    folder = _backup(server, source, tmp_path, "dir", "--format", "directory", "--jobs", "2")
    files = sorted(p.name for p in (folder / "dump").iterdir())
    assert "toc.dat.zst" in files and len(files) > 3
    env = runner_env(server)
    verify = run_dbops(["verify", "--from", str(folder)], env, tmp_path)
    assert verify.code == 0, verify.stderr
    target = f"{source}_dir"
    try:
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--create", "--jobs", "2"],
                        env, tmp_path)
        assert run.code == 0, run.stderr
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
        assert datasets.schema_dump(server, target) == datasets.schema_dump(server, source)
    finally:
        server.drop_database(target)


def test_plain_format_round_trip(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=30, bookings=50, events=20)
    folder = _backup(server, source, tmp_path, "plain", "--format", "plain", "--compression", "gzip")
    env = runner_env(server)
    assert run_dbops(["verify", "--from", str(folder)], env, tmp_path).code == 0
    target = f"{source}_plain"
    try:
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--create"], env, tmp_path)
        assert run.code == 0, run.stderr
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
    finally:
        server.drop_database(target)
