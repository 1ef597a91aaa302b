"""``dbops restore --recreate``: the target database is dropped and re-created, so objects not in the backup go."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.integration import datasets
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.postgres import PostgresServer

PROPERTIES = ("SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
              "FROM pg_database WHERE datname = '{}'")


@pytest.fixture
def owner_role(pg_server: PostgresServer) -> Iterator[str]:
    """A role (without CREATEDB) that owns the target database."""
    name = f"owner_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f"CREATE ROLE {name} LOGIN PASSWORD 'owner-pw' NOCREATEDB")
    yield name
    pg_server.psql(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
def target(pg_server: PostgresServer, owner_role: str) -> Iterator[str]:
    """An empty database owned by ``owner_role`` with a non-default locale (C instead of C.UTF-8)."""
    name = f"recreate_{uuid.uuid4().hex[:8]}"
    pg_server.psql(f"CREATE DATABASE {name} OWNER {owner_role} TEMPLATE template0 ENCODING 'UTF8' "
                   "LC_COLLATE 'C' LC_CTYPE 'C'")
    yield name
    pg_server.drop_database(name)


def _backup(server: PostgresServer, source: str, tmp_path: Path) -> Path:
    run = run_dbops(["backup", "--dbname", source, "--storage", str(tmp_path / "store"), "--name", "b"],
                    runner_env(server), tmp_path)
    assert run.code == 0, run.stderr
    return tmp_path / "store" / "local" / source / "b"


def _migrate_after_the_backup(server: PostgresServer, dbname: str) -> None:
    """What a failed migration run leaves behind: new objects the backup does not know."""
    server.psql("CREATE TYPE app.priority AS ENUM ('low', 'high');"
                "CREATE TABLE app.tickets (id int PRIMARY KEY, priority app.priority NOT NULL);"
                "INSERT INTO app.tickets VALUES (1, 'high');"
                "CREATE FUNCTION public.added_later() RETURNS int LANGUAGE sql AS 'SELECT 1';"
                "ALTER TABLE app.users ADD COLUMN nickname text", dbname)


def test_recreate_removes_objects_created_after_the_backup_and_keeps_owner_and_locale(
    database: tuple[PostgresServer, str], target: str, tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=80, bookings=400, events=40)
    folder = _backup(server, source, tmp_path)
    env = runner_env(server)
    first = run_dbops(["restore", "--from", str(folder), "--dbname", target], env, tmp_path)
    assert first.code == 0, first.stderr
    _migrate_after_the_backup(server, target)
    properties = server.psql(PROPERTIES.format(target))
    assert "|C|C" in properties
    assert "tickets" in server.psql("SELECT string_agg(relname, ',') FROM pg_class", target)

    with psycopg.connect(server.uri(target)) as idle_session:
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--recreate",
                         "--confirm-overwrite", target], env, tmp_path)
        assert run.code == 0, run.stderr
        with pytest.raises(psycopg.OperationalError):
            idle_session.execute("SELECT 1")  # terminated by DROP DATABASE … WITH (FORCE)

    assert run.result["recreated"] is True
    assert run.result["verification"]["rowCounts"]["passed"] is True
    assert server.psql(PROPERTIES.format(target)) == properties
    assert server.psql("SELECT count(*) FROM pg_type WHERE typname = 'priority'", target) == "0"
    assert server.psql("SELECT to_regclass('app.tickets') IS NULL", target) == "t"
    assert server.psql("SELECT count(*) FROM pg_proc WHERE proname = 'added_later'", target) == "0"
    assert datasets.schema_dump(server, target) == datasets.schema_dump(server, source)
    assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)


def test_recreate_creates_a_missing_database(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=10, bookings=20, events=5)
    folder = _backup(server, source, tmp_path)
    missing = f"{source}_gone"
    try:
        run = run_dbops(["restore", "--from", str(folder), "--dbname", missing, "--recreate",
                         "--confirm-overwrite", missing], runner_env(server), tmp_path)
        assert run.code == 0, run.stderr
        assert datasets.schema_dump(server, missing) == datasets.schema_dump(server, source)
    finally:
        server.drop_database(missing)


def test_recreate_is_refused_without_confirmation_privileges_or_a_valid_archive(
    database: tuple[PostgresServer, str], target: str, owner_role: str, tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=20, bookings=40, events=5)
    folder = _backup(server, source, tmp_path)
    env = runner_env(server)
    server.psql("CREATE TABLE keep_me (id int PRIMARY KEY); INSERT INTO keep_me SELECT generate_series(1, 9)", target)
    before = datasets.schema_dump(server, target), datasets.table_checksums(server, target)

    def untouched() -> bool:
        return (datasets.schema_dump(server, target), datasets.table_checksums(server, target)) == before

    for confirm in ([], ["--confirm-overwrite", "some_other_db"]):
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--recreate", *confirm],
                        env, tmp_path)
        assert run.code == 2, run.stderr
        assert run.result["reason"] == "OverwriteNotConfirmed"
        assert f"--confirm-overwrite {target}" in run.result["message"]
        assert untouched()

    run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--recreate", "--confirm-overwrite",
                     target, "--mode", "schema-only"], env, tmp_path)
    assert run.code == 2 and "only used with mode full" in run.result["message"]
    assert untouched()

    # The owner may drop its database but lacks CREATEDB: refused before anything is dropped.
    as_owner = {**env, "PGUSER": owner_role, "PGPASSWORD": "owner-pw"}
    run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--recreate", "--confirm-overwrite",
                     target, "--no-owner"], as_owner, tmp_path)
    assert run.code == 2, run.stderr
    assert run.result["reason"] == "InsufficientPrivileges"
    assert "CREATEDB" in run.result["message"]
    assert untouched()

    # A damaged archive is refused by its checksum before the target is dropped.
    dump = folder / "dump.zst"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--recreate", "--confirm-overwrite",
                     target], env, tmp_path)
    assert run.code in (1, 2), run.stderr
    assert run.result["reason"] == "ChecksumMismatch"
    assert untouched()


DATABASE_PROPERTIES = """
SELECT coalesce((SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END
                                   || ':' || a.privilege_type, ',' ORDER BY 1)
                 FROM aclexplode(d.datacl) a), 'default')
       || ' | ' || coalesce((SELECT string_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*') || ':'
                                               || array_to_string(s.setconfig, ';'), ',' ORDER BY 1)
                            FROM pg_db_role_setting s WHERE s.setdatabase = d.oid), '')
       || ' | ' || coalesce(shobj_description(d.oid, 'pg_database'), '')
FROM pg_database d WHERE d.datname = '{}'
"""


def test_recreate_brings_back_database_grants_settings_and_comment(
    pg_server: PostgresServer, target: str, owner_role: str, tmp_path: Path
) -> None:
    """Issue 13: a role-specific GRANT and ALTER DATABASE … SET survive a rollback by recreate."""
    server = pg_server
    reader = f"reader_{uuid.uuid4().hex[:8]}"
    server.psql(f"CREATE ROLE {reader} LOGIN")
    try:
        server.psql(f"""
            REVOKE ALL ON DATABASE {target} FROM PUBLIC;
            GRANT CONNECT, TEMPORARY ON DATABASE {target} TO {reader};
            ALTER DATABASE {target} SET search_path = app, "$user", public;
            ALTER DATABASE {target} SET statement_timeout = '30s';
            ALTER ROLE {reader} IN DATABASE {target} SET work_mem = '8MB';
            COMMENT ON DATABASE {target} IS 'the app''s database';
        """)
        server.psql("CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY); INSERT INTO app.t VALUES (1)",
                    target)
        recorded = server.psql(DATABASE_PROPERTIES.format(target))
        assert f"{reader}:CONNECT" in recorded and "search_path=app" in recorded and "app''s" not in recorded
        folder = _backup(server, target, tmp_path)
        # The failed migration changed them too; the rollback must bring back the backup's.
        server.psql(f"ALTER DATABASE {target} RESET search_path; GRANT ALL ON DATABASE {target} TO PUBLIC;"
                    f"COMMENT ON DATABASE {target} IS NULL")
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--recreate",
                         "--confirm-overwrite", target], runner_env(server), tmp_path)
        assert run.code == 0, run.output
        assert server.psql(DATABASE_PROPERTIES.format(target)) == recorded
        assert server.psql("SHOW search_path", target) == 'app, "$user", public'
        assert server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "1"
    finally:
        server.drop_database(target)
        server.psql(f"DROP ROLE IF EXISTS {reader}")
