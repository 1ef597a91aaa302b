"""Backups to a real S3-compatible store (MinIO): multipart streaming, aborts, clear errors."""

from __future__ import annotations

import datetime
import json
import signal
import time
import uuid
from pathlib import Path

import pytest
from tests.integration import datasets
from tests.integration.runner_cli import finished, popen_dbops, run_dbops, runner_env

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer


def _s3_args(minio: MinioServer) -> list[str]:
    return ["--s3-endpoint", minio.endpoint, "--s3-force-path-style"]


@pytest.mark.parametrize("checksum", ["when_required", "when_supported"])
def test_s3_round_trip_with_each_checksum_setting(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path, checksum: str
) -> None:
    server, source = database
    datasets.create_dataset(server, source)
    env = runner_env(server, **minio_server.env(), DBOPS_S3_CHECKSUM=checksum)
    s3 = _s3_args(minio_server)
    backup = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/prod", "--name", "b1",
                        "--namespace", "team", *s3], env, tmp_path)
    assert backup.code == 0, backup.stderr
    folder = f"s3://{bucket}/prod/team/{source}/b1"
    assert backup.result["artifact"]["uri"] == f"{folder}/dump.zst"
    assert backup.result["artifact"]["manifestUri"] == f"{folder}/manifest.json"
    keys = sorted(o["Key"] for o in minio_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"prod/team/{source}/b1/dump.zst", f"prod/team/{source}/b1/manifest.json"]
    verify = run_dbops(["verify", "--from", f"{folder}/manifest.json", *s3], env, tmp_path)
    assert verify.code == 0, verify.stderr
    target = f"{source}_s3"
    # One setting restores streaming, the other downloads for a parallel pg_restore.
    jobs = "1" if checksum == "when_required" else "2"
    restore = run_dbops(["restore", "--from", folder, "--dbname", target, "--create", "--jobs", jobs, *s3],
                        env, tmp_path)
    assert restore.code == 0, restore.stderr
    try:
        assert restore.result["restoredFrom"]["uri"] == f"{folder}/dump.zst"
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
    finally:
        server.drop_database(target)
    deleted = run_dbops(["delete-backup", "--from", folder, *s3], env, tmp_path)
    assert deleted.code == 0, deleted.stderr
    assert deleted.result["deletedObjects"] == 2
    assert minio_server.client().list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def _fill_with_incompressible_rows(server: PostgresServer, dbname: str) -> None:
    # ~200 MB of text: far more than pg_dump can run ahead of a level-19 compressor before the first part
    # is uploaded, so it is certainly still streaming when it is interrupted.
    server.psql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS v "
        "FROM generate_series(1, 2000000) g",
        dbname,
    )


@pytest.mark.parametrize("interruption", ["pg_terminate_backend", "SIGTERM"])
def test_interrupted_backup_fails_and_aborts_the_multipart_upload(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path, interruption: str
) -> None:
    """pg_dump's backend terminated mid-stream, or the runner itself stopped (as on pod deletion)."""
    server, source = database
    _fill_with_incompressible_rows(server, source)
    env = runner_env(server, **minio_server.env())
    client = minio_server.client()
    result_path = tmp_path / "result.json"
    # zstd level 9 is slower than pg_dump, so pg_dump is still streaming when the first part is uploaded, yet
    # fast enough that the first 8 MiB part is reached quickly on a loaded machine (level 19 took over 5 minutes
    # with parallel test workers on 2 cores).
    process = popen_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "killed",
                           "--compression-level", "9", *_s3_args(minio_server)], env, result_path)
    try:
        deadline = time.monotonic() + 300
        while not client.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            assert process.poll() is None, "the backup ended before a multipart upload started"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        if interruption == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        else:
            terminated = server.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE datname = '{source}' AND application_name = 'pg_dump'"
            )
            assert terminated == "1"
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    run = finished(process, stdout, stderr, result_path)
    assert run.result["ok"] is False
    if interruption == "SIGTERM":
        assert run.code == 3 and run.result["reason"] == "Interrupted"
    else:
        assert run.code != 0 and "pg_dump" in run.result["message"]
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{source}' "
                       "AND application_name = 'pg_dump'") == "0"


def test_missing_bucket_is_named(database: tuple[PostgresServer, str], minio_server: MinioServer,
                                 tmp_path: Path) -> None:
    server, source = database
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    run = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{missing}/x", *_s3_args(minio_server)],
                    runner_env(server, **minio_server.env()), tmp_path)
    assert run.code == 2
    assert run.result["reason"] == "NotFound"
    lines = [line for line in run.stderr.splitlines() if "failed" in line]
    assert len(lines) == 1 and f"S3 bucket '{missing}' does not exist" in lines[0]
    assert minio_server.secret_key not in run.output


def test_wrong_s3_secret_is_access_denied_without_the_secret(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    server, source = database
    wrong = "Wrong-secret-key-0042"
    env = runner_env(server, **{**minio_server.env(), "AWS_SECRET_ACCESS_KEY": wrong})
    run = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/x", *_s3_args(minio_server)],
                    env, tmp_path)
    assert run.code == 2
    assert run.result["reason"] == "AuthenticationFailed"
    assert wrong not in run.output
    assert server.password not in run.output
    assert json.dumps(run.result).count("access denied") == 1


def test_two_runs_of_the_same_backup_commit_exactly_one_consistent_manifest(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=3000, bookings=30000, events=5000)
    env = runner_env(server, **minio_server.env())
    args = ["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "same",
            *_s3_args(minio_server)]
    processes = [(popen_dbops(args, env, tmp_path / f"r{i}.json"), tmp_path / f"r{i}.json") for i in range(2)]
    runs = [finished(p, *p.communicate(timeout=300), path) for p, path in processes]
    assert sorted(run.code for run in runs) in ([0, 2], [0, 0]) or [r.code for r in runs if r.code == 0] == [0]
    winners = [run for run in runs if run.code == 0]
    assert len(winners) >= 1
    for loser in (run for run in runs if run.code != 0):
        assert loser.result["reason"] == "AlreadyExists", loser.stderr
    client = minio_server.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"p/local/{source}/same/dump.zst", f"p/local/{source}/same/manifest.json"]
    verify = run_dbops(["verify", "--from", f"s3://{bucket}/p/local/{source}/same", *_s3_args(minio_server)],
                       env, tmp_path)
    assert verify.code == 0, verify.stderr
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_retry_replaces_a_dump_left_without_a_manifest(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    server, source = database
    server.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", source)
    minio_server.client().put_object(Bucket=bucket, Key=f"p/local/{source}/retry/dump.zst", Body=b"half a dump")
    env = runner_env(server, **minio_server.env())
    run = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "retry",
                     *_s3_args(minio_server)], env, tmp_path)
    assert run.code == 0, run.stderr
    verify = run_dbops(["verify", "--from", run.result["artifact"]["manifestUri"], *_s3_args(minio_server)],
                       env, tmp_path)
    assert verify.code == 0, verify.stderr


def _put_lease(minio_server: MinioServer, bucket: str, key: str, run_id: str, age: float) -> None:
    acquired = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age)
    body = json.dumps({"runId": run_id, "acquiredAt": acquired.isoformat(), "host": "elsewhere"}).encode()
    minio_server.client().put_object(Bucket=bucket, Key=key, Body=body)


def test_a_run_reaching_its_commit_while_another_run_commits_waits_and_never_touches_the_winners_dump(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    # The interleaving that destroyed a committed backup: run B checked "no manifest yet", then run A
    # committed dump and manifest, then B's dump commit overwrote A's dump. A live run holds the lease here.
    server, source = database
    server.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", source)
    folder = f"p/local/{source}/same"
    _put_lease(minio_server, bucket, f"{folder}/.dbops-lock", "run-a", age=0)
    env = runner_env(server, **minio_server.env())
    result_path = tmp_path / "b.json"
    process = popen_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "same",
                           *_s3_args(minio_server)], env, result_path)
    assert process.stderr is not None
    seen = []
    while "waiting for another run of the same backup to commit" not in (line := process.stderr.readline()):
        assert line, f"run B never waited for run A's lease: {''.join(seen)}"
        seen.append(line)
    client = minio_server.client()
    assert sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]) == [f"{folder}/.dbops-lock"]
    # Run A commits meanwhile and gives the lease back.
    client.put_object(Bucket=bucket, Key=f"{folder}/dump.zst", Body=b"run A's dump")
    client.put_object(Bucket=bucket, Key=f"{folder}/manifest.json", Body=b"{}")
    client.delete_object(Bucket=bucket, Key=f"{folder}/.dbops-lock")
    loser = finished(process, *process.communicate(timeout=300), result_path)
    assert loser.code == 2, loser.stderr
    assert loser.result["reason"] == "AlreadyExists"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"{folder}/dump.zst", f"{folder}/manifest.json"]
    assert client.get_object(Bucket=bucket, Key=f"{folder}/dump.zst")["Body"].read() == b"run A's dump"
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_the_commit_lease_of_a_killed_run_is_taken_over_once_stale(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    server, source = database
    server.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", source)
    folder = f"p/local/{source}/killed"
    _put_lease(minio_server, bucket, f"{folder}/.dbops-lock", "killed-run", age=2 * 3600)
    env = runner_env(server, **minio_server.env())
    run = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "killed",
                     "--abort-incomplete-after", "1h", *_s3_args(minio_server)], env, tmp_path)
    assert run.code == 0, run.stderr
    assert "took over a stale commit lease" in run.stderr and "killed-run" in run.stderr
    keys = sorted(o["Key"] for o in minio_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"{folder}/dump.zst", f"{folder}/manifest.json"]
    verify = run_dbops(["verify", "--from", f"s3://{bucket}/{folder}", *_s3_args(minio_server)], env, tmp_path)
    assert verify.code == 0, verify.stderr
