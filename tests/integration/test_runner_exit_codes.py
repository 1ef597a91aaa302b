"""The exit-code taxonomy: every runner command, fed bad input, exits with its class and names what is at fault.

user error 2, transient 3, verification failed 1, internal 4 (``dbops.runner.result.ExitCode``); never a traceback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

USER, TRANSIENT, VERIFICATION = 2, 3, 1


@dataclasses.dataclass
class World:
    """What a case can point at: a server, a source database with a backup, MinIO with a bucket."""

    server: PostgresServer
    dbname: str
    folder: Path
    minio: MinioServer
    bucket: str
    tmp: Path

    @property
    def s3(self) -> list[str]:
        return ["--s3-endpoint", self.minio.endpoint, "--s3-force-path-style"]

    def env(self, **extra: str) -> dict[str, str]:
        return runner_env(self.server, **{**self.minio.env(), **extra})


@dataclasses.dataclass(frozen=True)
class Case:
    """argv (built from the world), expected code, texts the message must contain, extra env."""

    argv: Callable[[World], list[str]]
    code: int
    names: Callable[[World], list[str]]
    env: Callable[[World], dict[str, str]] = lambda w: {}
    setup: Callable[[World], None] = lambda w: None


def _file(w: World) -> Path:
    path = w.tmp / "a-regular-file"
    path.write_text("not a folder")
    return path


CASES: dict[str, Case] = {
    "restore-file-as-folder": Case(
        lambda w: ["restore", "--from", str(w.folder / "dump.zst"), "--dbname", w.dbname], USER,
        lambda w: [str(w.folder / "dump.zst")]),
    "verify-file-as-folder": Case(
        lambda w: ["verify", "--from", str(w.folder / "dump.zst")], USER, lambda w: [str(w.folder / "dump.zst")]),
    "restore-missing-folder": Case(
        lambda w: ["restore", "--from", str(w.tmp / "nothing-here"), "--dbname", w.dbname], USER,
        lambda w: [str(w.tmp / "nothing-here")]),
    "restore-missing-bucket": Case(
        lambda w: ["restore", "--from", "s3://no-such-bucket-dbops/x/y", "--dbname", w.dbname, *w.s3], USER,
        lambda w: ["S3 bucket 'no-such-bucket-dbops' does not exist"]),
    "verify-missing-bucket": Case(
        lambda w: ["verify", "--from", "s3://no-such-bucket-dbops/x/y", *w.s3], USER,
        lambda w: ["S3 bucket 'no-such-bucket-dbops' does not exist"]),
    "backup-missing-bucket": Case(
        lambda w: ["backup", "--dbname", w.dbname, "--storage", "s3://no-such-bucket-dbops/x", *w.s3], USER,
        lambda w: ["S3 bucket 'no-such-bucket-dbops' does not exist"]),
    "verify-unknown-endpoint": Case(
        lambda w: ["verify", "--from", f"s3://{w.bucket}/x", "--s3-endpoint", "http://no-such-host.invalid:9000"],
        TRANSIENT, lambda w: ["http://no-such-host.invalid:9000"]),
    "backup-closed-endpoint": Case(
        lambda w: ["backup", "--dbname", w.dbname, "--storage", f"s3://{w.bucket}/x", "--s3-endpoint",
                   "http://127.0.0.1:9"], TRANSIENT, lambda w: ["http://127.0.0.1:9"]),
    "verify-wrong-key": Case(
        lambda w: ["verify", "--from", f"s3://{w.bucket}/x", *w.s3], USER, lambda w: [w.bucket, "access denied"],
        lambda w: {"AWS_SECRET_ACCESS_KEY": "wrong-secret-key-value"}),
    "backup-unreachable-database": Case(
        lambda w: ["backup", "--dbname", w.dbname, "--host", "127.0.0.1", "--port", "9", "--storage",
                   str(w.tmp / "s")], TRANSIENT, lambda w: ["127.0.0.1:9"]),
    "restore-wrong-password": Case(
        lambda w: ["restore", "--from", str(w.folder), "--dbname", w.dbname], USER, lambda w: [w.dbname],
        lambda w: {"PGPASSWORD": "wrong-password"}),
    "restore-nonexistent-table": Case(
        lambda w: ["restore", "--from", str(w.folder), "--dbname", w.dbname, "--mode", "tables", "--table",
                   "no_such_table", "--strategy", "merge"], USER, lambda w: ["no_such_table"]),
    "restore-partition-parent-newer-than-backup": Case(
        lambda w: ["restore", "--from", str(w.folder), "--dbname", w.dbname, "--mode", "tables", "--table",
                   "parted", "--strategy", "merge"], USER, lambda w: ["'parted'", "public.parted_a"],
        setup=lambda w: w.server.psql(
            "CREATE TABLE IF NOT EXISTS parted (id int) PARTITION BY RANGE (id); CREATE TABLE IF NOT EXISTS "
            "parted_a PARTITION OF parted FOR VALUES FROM (0) TO (10)", w.dbname)),
    "restore-non-empty-target": Case(
        lambda w: ["restore", "--from", str(w.folder), "--dbname", w.dbname], USER,
        lambda w: [w.dbname, "--confirm-overwrite"]),
    "restore-data-only-non-empty-target": Case(
        lambda w: ["restore", "--from", str(w.folder), "--dbname", w.dbname, "--mode", "data-only"], USER,
        lambda w: [w.dbname, "public.items", "--confirm-overwrite"]),
    "backup-storage-is-a-file": Case(
        lambda w: ["backup", "--dbname", w.dbname, "--storage", str(_file(w))], USER,
        lambda w: [str(w.tmp / "a-regular-file")]),
    "backup-database-name-with-quote": Case(
        lambda w: ["backup", "--dbname", 'no"such', "--storage", str(w.tmp / "s")], USER, lambda w: ['no"such']),
    "backup-no-matching-tables": Case(
        lambda w: ["backup", "--dbname", w.dbname, "--storage", str(w.tmp / "s"), "--table", "no_such_table"],
        USER, lambda w: ["no_such_table"]),
    "backup-uri-with-non-numeric-port": Case(
        lambda w: ["backup", "--storage", str(w.tmp / "s")], USER, lambda w: ["port"],
        lambda w: {"DBOPS_DATABASE_URI": f"postgresql://u:secret-pw@127.0.0.1:port/{w.dbname}"}),
    "delete-backup-file-as-folder": Case(
        lambda w: ["delete-backup", "--from", str(w.folder / "dump.zst")], USER, lambda w: [str(w.folder / "dump.zst")]),
    "delete-backup-missing-bucket": Case(
        lambda w: ["delete-backup", "--from", "s3://no-such-bucket-dbops/x/y", *w.s3], USER,
        lambda w: ["no-such-bucket-dbops", "does not exist"]),
    "verify-flipped-byte": Case(
        lambda w: ["verify", "--from", str(_flipped(w))], VERIFICATION, lambda w: ["dump.zst", "sha256"]),
}


def _flipped(w: World) -> Path:
    copy = w.tmp / "flipped"
    copy.mkdir(exist_ok=True)
    for item in w.folder.iterdir():
        data = bytearray(item.read_bytes())
        if item.name == "dump.zst":
            data[len(data) // 2] ^= 0x01
        (copy / item.name).write_bytes(bytes(data))
    return copy


@pytest.fixture(scope="module")
def world_base(pg_server: PostgresServer, minio_server: MinioServer, tmp_path_factory: pytest.TempPathFactory
               ) -> World:
    tmp = tmp_path_factory.mktemp("codes")
    dbname = f"codes_{pg_server.major}"
    pg_server.drop_database(dbname)
    pg_server.create_database(dbname)
    pg_server.psql("CREATE TABLE items (id int PRIMARY KEY, v text); "
                   "INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 100) g", dbname)
    bucket = f"codes-{pg_server.major}"
    client = minio_server.client()
    if bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=bucket)
    run = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp / "store"), "--name", "b"],
                    runner_env(pg_server), tmp)
    assert run.code == 0, run.output
    return World(pg_server, dbname, tmp / "store" / "local" / dbname / "b", minio_server, bucket, tmp)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_exits_with_its_class_and_names_the_thing_at_fault(world_base: World, case: str,
                                                                     tmp_path: Path) -> None:
    world = dataclasses.replace(world_base, tmp=tmp_path)
    spec = CASES[case]
    spec.setup(world)
    run = run_dbops(spec.argv(world), world.env(**spec.env(world)), tmp_path, timeout=300)
    message = run.result.get("message", "")
    assert run.code == spec.code, f"{case}: exit {run.code}, expected {spec.code}: {run.output}"
    for name in spec.names(world):
        assert name in message, f"{case}: {name!r} not named in {message!r}"
    assert "Traceback" not in run.output, run.output
    assert "wrong-secret-key-value" not in run.output and "wrong-password" not in run.output
    assert "secret-pw" not in run.output
