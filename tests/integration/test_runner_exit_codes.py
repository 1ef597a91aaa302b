"""The exit-code taxonomy: every runner command, fed bad input, exits with its class and names what is at fault.

user error 2, transient 3, verification failed 1, internal 4 (``dbops.runner.result.ExitCode``); never a traceback.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration.runner_cli import Run, finished, run_dbops, runner_env

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


def _migrations(w: World, files: dict[str, str] | None = None) -> Path:
    """A migrations folder: two good files, or ``files``."""
    folder = w.tmp / "migrations"
    folder.mkdir(exist_ok=True)
    for name, text in (files or {
        "0001_create_orders.up.sql": "CREATE TABLE customers (id int PRIMARY KEY, last_order_id int);\n"
                                     "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers);",
        "0002_last_order.up.sql": "ALTER TABLE customers ADD FOREIGN KEY (last_order_id) REFERENCES orders;",
    }).items():
        (folder / name).write_text(text)
    return folder


def _text_file(w: World, name: str, text: str) -> Path:
    path = w.tmp / name
    path.write_text(text)
    return path


def _kubeconfig(w: World, server: str) -> Path:
    return _text_file(w, "kubeconfig", (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: secret-token-value}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]\n"))


def _db(w: World) -> list[str]:
    return ["--dbname", w.dbname]


def _fresh(w: World, suffix: str) -> list[str]:
    """An empty database of the case's own (the shared one has tables but no history, so apply refuses it)."""
    name = f"{w.dbname}_{suffix}"
    w.server.drop_database(name)
    w.server.create_database(name)
    return ["--dbname", name]


# The migration, check, verify-db and trigger commands: sources, connections, tables and flag values at fault.
MORE_CASES: dict[str, Case] = {
    "migrate-plan-missing-source": Case(
        lambda w: ["migrate", "plan", "--source", str(w.tmp / "no-migrations"), *_db(w)], USER,
        lambda w: [str(w.tmp / "no-migrations")]),
    "migrate-apply-source-is-a-file": Case(
        lambda w: ["migrate", "apply", "--source", str(_file(w)), *_db(w)], USER,
        lambda w: [str(w.tmp / "a-regular-file")]),
    "migrate-plan-malformed-file-name": Case(
        lambda w: ["migrate", "plan", "--source", str(_migrations(w, {"0001_a.up.sql": "SELECT 1;",
                                                                         "create-orders.sql": "SELECT 1;"})),
                   *_db(w)], USER, lambda w: ["create-orders.sql"]),
    "migrate-plan-version-gap": Case(
        lambda w: ["migrate", "plan", "--source", str(_migrations(w, {"0001_a.up.sql": "SELECT 1;",
                                                                         "0003_c.up.sql": "SELECT 1;"})),
                   *_db(w)], USER, lambda w: ["0003", "--allow-gaps"]),
    "migrate-plan-inline-file-malformed": Case(
        lambda w: ["migrate", "plan", "--inline-file", str(_text_file(w, "inline.json", "[{version: ")), *_db(w)],
        USER, lambda w: [str(w.tmp / "inline.json")]),
    "migrate-plan-inline-file-missing": Case(
        lambda w: ["migrate", "plan", "--inline-file", str(w.tmp / "nothing.json"), *_db(w)], USER,
        lambda w: [str(w.tmp / "nothing.json")]),
    "migrate-apply-unreachable-database": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w)), *_db(w), "--host", "127.0.0.1", "--port",
                   "9"], TRANSIENT, lambda w: ["127.0.0.1:9"]),
    "migrate-apply-wrong-password": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w)), *_db(w)], USER, lambda w: [w.dbname],
        lambda w: {"PGPASSWORD": "wrong-password"}),
    "migrate-status-missing-database": Case(
        lambda w: ["migrate", "status", "--source", str(_migrations(w)), "--dbname", "no_such_database"], USER,
        lambda w: ["no_such_database"]),
    "migrate-status-uri-with-non-numeric-port": Case(
        lambda w: ["migrate", "status", "--source", str(_migrations(w))], USER, lambda w: ["port"],
        lambda w: {"DBOPS_DATABASE_URI": f"postgresql://u:secret-pw@127.0.0.1:port/{w.dbname}"}),
    "migrate-apply-bad-lock-timeout": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w)), *_db(w), "--lock-timeout", "5 parsecs"],
        USER, lambda w: ["--lock-timeout", "5 parsecs"]),
    "migrate-apply-bad-lock-retries": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w)), *_db(w), "--lock-retries", "many"],
        USER, lambda w: ["--lock-retries", "many"]),
    "migrate-apply-unknown-target-version": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w)), *_fresh(w, "target"), "--target-version", "0099"],
        USER, lambda w: ["0099"]),
    "migrate-apply-plan-hash-mismatch": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w)), *_fresh(w, "hash"), "--expect-plan-hash",
                   "sha256:not-the-plan"], USER, lambda w: ["sha256:not-the-plan"]),
    "migrate-apply-unknown-verify-builtin": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w)), *_db(w), "--verify-builtin",
                   "foreignKeys,bogusCheck"], USER, lambda w: ["bogusCheck"]),
    "migrate-apply-statement-fails": Case(
        lambda w: ["migrate", "apply", "--source", str(_migrations(w, {
            "0001_orders.up.sql": "CREATE TABLE orders (id int PRIMARY KEY, item_id int REFERENCES no_such_table);",
        })), *_fresh(w, "fails")], USER, lambda w: ["0001", "no_such_table"]),
    "migrate-down-without-down-file": Case(
        lambda w: ["migrate", "down", "--source", str(_migrations(w)), "--dbname", f"{w.dbname}_down", "--to", "0"],
        USER, lambda w: ["0002", "down"], setup=lambda w: _apply(w)),
    "migrate-rehearse-backup-is-a-file": Case(
        lambda w: ["migrate", "rehearse", "--source", str(_migrations(w)), *_db(w), "--from",
                   str(w.folder / "dump.zst")], USER, lambda w: [str(w.folder / "dump.zst")]),
    "migrate-rehearse-missing-backup": Case(
        lambda w: ["migrate", "rehearse", "--source", str(_migrations(w)), *_db(w), "--from",
                   str(w.tmp / "no-backup")], USER, lambda w: [str(w.tmp / "no-backup")]),
    "migrate-import-missing-history-table": Case(
        lambda w: ["migrate", "import", "--source", str(_migrations(w)), *_db(w), "--from", "golang-migrate",
                   "--from-table", "no_such_history"], USER, lambda w: ["no_such_history"]),
    "migrate-import-unknown-tool": Case(
        lambda w: ["migrate", "import", "--source", str(_migrations(w)), *_db(w), "--from", "liquibase"], USER,
        lambda w: ["--from", "liquibase"]),
    "migrate-repair-unknown-version": Case(
        lambda w: ["migrate", "repair", "--source", str(_migrations(w)), *_db(w), "--version", "0042",
                   "--reason", "comment fixed"], USER, lambda w: ["0042"]),
    "check-unreachable-database": Case(
        lambda w: ["check", *_db(w), "--host", "127.0.0.1", "--port", "9"], TRANSIENT, lambda w: ["127.0.0.1:9"]),
    "check-wrong-password": Case(
        lambda w: ["check", *_db(w)], USER, lambda w: [w.dbname], lambda w: {"PGPASSWORD": "wrong-password"}),
    "check-unknown-schema": Case(
        lambda w: ["check", *_db(w), "--schema", "no_such_schema"], VERIFICATION, lambda w: ["no_such_schema"]),
    "check-bad-connection-limit": Case(
        lambda w: ["check", *_db(w), "--max-active-connections", "lots"], USER,
        lambda w: ["--max-active-connections", "lots"]),
    "verify-db-unreachable-database": Case(
        lambda w: ["verify-db", *_db(w), "--host", "127.0.0.1", "--port", "9"], TRANSIENT,
        lambda w: ["127.0.0.1:9"]),
    "verify-db-wrong-password": Case(
        lambda w: ["verify-db", *_db(w)], USER, lambda w: [w.dbname], lambda w: {"PGPASSWORD": "wrong-password"}),
    "verify-db-unknown-table": Case(
        lambda w: ["verify-db", *_db(w), "--row-count-tables", "public.no_such_table"], USER,
        lambda w: ["no_such_table"]),
    "verify-db-unknown-builtin": Case(
        lambda w: ["verify-db", *_db(w), "--builtin", "bogusCheck"], USER, lambda w: ["bogusCheck"]),
    "verify-db-checks-file-missing": Case(
        lambda w: ["verify-db", *_db(w), "--checks-file", str(w.tmp / "checks.yaml")], USER,
        lambda w: [str(w.tmp / "checks.yaml")]),
    "verify-db-checks-file-malformed": Case(
        lambda w: ["verify-db", *_db(w), "--checks-file", str(_text_file(w, "checks.yaml", "- name: [unclosed"))],
        USER, lambda w: [str(w.tmp / "checks.yaml")]),
    # A check that cannot run after migrating (its table gone) is a failed verification, as onFailure expects.
    "verify-db-check-sql-refers-to-unknown-table": Case(
        lambda w: ["verify-db", *_db(w), "--checks-file", str(_text_file(
            w, "checks.yaml", "- name: no-orphans\n  sql: SELECT count(*) FROM no_such_table\n  expect: {equals: 0}\n"
        ))], VERIFICATION, lambda w: ["no-orphans", "no_such_table"]),
    "verify-db-check-fails": Case(
        lambda w: ["verify-db", *_db(w), "--checks-file", str(_text_file(
            w, "checks.yaml", "- name: at-most-ten-items\n  sql: SELECT count(*) FROM items\n  expect: {max: 10}\n"
        ))], VERIFICATION, lambda w: ["at-most-ten-items"]),
    "verify-db-row-counts-before-missing": Case(
        lambda w: ["verify-db", *_db(w), "--row-counts-before", str(w.tmp / "counts.json")], USER,
        lambda w: [str(w.tmp / "counts.json")]),
    "verify-db-bad-tolerance": Case(
        lambda w: ["verify-db", *_db(w), "--row-count-tolerance", "five"], USER,
        lambda w: ["--row-count-tolerance", "five"]),
    "trigger-missing-kubeconfig": Case(
        lambda w: ["trigger", "backup", "--schedule", "nightly", "--namespace", "default", "--kubeconfig",
                   str(w.tmp / "no-kubeconfig")], USER, lambda w: [str(w.tmp / "no-kubeconfig")]),
    "trigger-unreachable-api-server": Case(
        lambda w: ["trigger", "backup", "--schedule", "nightly", "--namespace", "default", "--kubeconfig",
                   str(_kubeconfig(w, "https://127.0.0.1:9"))], TRANSIENT, lambda w: ["127.0.0.1:9"]),
    "trigger-bad-scheduled-time": Case(
        lambda w: ["trigger", "backup", "--schedule", "nightly", "--namespace", "default", "--scheduled-time",
                   "yesterday", "--kubeconfig", str(_kubeconfig(w, "https://127.0.0.1:9"))], USER,
        lambda w: ["--scheduled-time", "yesterday"]),
    "restore-bad-jobs": Case(
        lambda w: ["restore", "--from", str(w.folder), "--dbname", w.dbname, "--jobs", "two"], USER,
        lambda w: ["--jobs", "two"]),
    "delete-backup-closed-endpoint": Case(
        lambda w: ["delete-backup", "--from", f"s3://{w.bucket}/x/y", "--s3-endpoint", "http://127.0.0.1:9"],
        TRANSIENT, lambda w: ["http://127.0.0.1:9"]),
}
CASES.update(MORE_CASES)


def _apply(w: World) -> None:
    """Apply the two migrations (which have no down files) to a database of their own."""
    run = _run(["migrate", "apply", "--source", str(_migrations(w)), *_fresh(w, "down")], w.env(), w.tmp)
    assert run.code == 0, run.output


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


def _run(argv: list[str], env: dict[str, str], tmp: Path) -> Run:
    """``dbops ARGV`` as a Job runs it, with ``--result-path`` (every runner command has it): the result goes
    there, not where ``DBOPS_RESULT_PATH`` says."""
    result_path, from_env = tmp / "result.json", tmp / "result-from-env.json"
    words = 2 if argv[0] in ("migrate", "trigger") else 1  # the flag goes after the (sub)command's words
    process = subprocess.Popen([sys.executable, "-m", "dbops.cli.main", *argv[:words], "--result-path",
                                str(result_path), *argv[words:]],
                               env={**env, "DBOPS_RESULT_PATH": str(from_env)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=300)
    run = finished(process, stdout, stderr, result_path)
    assert not from_env.exists(), f"{argv[:words]}: --result-path ignored, the result went to $DBOPS_RESULT_PATH"
    if run.result:
        assert run.result["exitCode"] == run.code, run.output
    return run


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_exits_with_its_class_and_names_the_thing_at_fault(world_base: World, case: str,
                                                                     tmp_path: Path) -> None:
    world = dataclasses.replace(world_base, tmp=tmp_path)
    spec = CASES[case]
    spec.setup(world)
    run = _run(spec.argv(world), world.env(**spec.env(world)), tmp_path)
    # A flag value argparse refuses is reported on stderr (no result document: the command never started).
    message = run.result.get("message", "") or run.stderr
    assert run.code == spec.code, f"{case}: exit {run.code}, expected {spec.code}: {run.output}"
    for name in spec.names(world):
        assert name in message, f"{case}: {name!r} not named in {message!r}"
    assert "Traceback" not in run.output, run.output
    assert "wrong-secret-key-value" not in run.output and "wrong-password" not in run.output
    assert "secret-pw" not in run.output and "secret-token-value" not in run.output
