"""Incomplete multipart uploads a SIGKILLed runner leaves are aborted by the next run in the same folder only."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.integration import datasets
from tests.integration.runner_cli import popen_dbops, run_dbops, runner_env

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer


def _s3_args(minio: MinioServer) -> list[str]:
    return ["--s3-endpoint", minio.endpoint, "--s3-force-path-style"]


def _uploads(client: Any, bucket: str, prefix: str = "") -> list[str]:
    # MinIO matches a listing prefix against whole object names only: list everything, filter here.
    response = client.list_multipart_uploads(Bucket=bucket)
    return sorted(str(u["Key"]) for u in response.get("Uploads", []) if str(u["Key"]).startswith(prefix))


def _start_upload(client: Any, bucket: str, key: str) -> str:
    """An in-progress multipart upload with one part, as another run would have."""
    upload_id = str(client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)
    return upload_id


def _sigkill_mid_upload(server: PostgresServer, source: str, minio: MinioServer, bucket: str,
                        tmp_path: Path, name: str) -> None:
    """Start a backup, SIGKILL the runner as soon as its multipart upload exists (no cleanup can run)."""
    server.psql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text) AS v "
        "FROM generate_series(1, 2000000) g",
        source,
    )
    client = minio.client()
    process = popen_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", name,
                           "--compression-level", "9", *_s3_args(minio)],
                          runner_env(server, **minio.env()), tmp_path / "killed.json")
    try:
        deadline = time.monotonic() + 300
        while not _uploads(client, bucket, f"p/local/{source}/{name}/"):
            assert process.poll() is None, "the backup ended before a multipart upload started"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    server.psql("DROP TABLE big", source)


def test_next_backup_aborts_the_killed_runs_upload_and_leaves_siblings_alone(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=200, bookings=2000, events=500)
    client = minio_server.client()
    folder = f"p/local/{source}/nightly"
    _sigkill_mid_upload(server, source, minio_server, bucket, tmp_path, "nightly")
    assert _uploads(client, bucket, f"{folder}/") == [f"{folder}/dump.zst"], "SIGKILL left no upload to clean"
    # Another backup whose name extends this one's, another namespace, and a foreign prefix: all in progress.
    siblings = [f"p/local/{source}/nightly-2/dump.zst", f"p/other/{source}/nightly/dump.zst",
                "unrelated/nightly/dump.zst"]
    for key in siblings:
        _start_upload(client, bucket, key)
    time.sleep(2.5)  # every upload is now older than the bound below

    env = runner_env(server, **minio_server.env())
    run = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "nightly",
                     "--abort-incomplete-after", "2s", *_s3_args(minio_server)], env, tmp_path)
    assert run.code == 0, run.stderr
    assert run.result["abortedIncompleteUploads"] == 1
    assert f"s3://{bucket}/{folder}/dump.zst" in run.stderr
    assert _uploads(client, bucket, f"{folder}/") == []
    assert _uploads(client, bucket) == sorted(siblings)
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/")["Contents"])
    assert keys == [f"{folder}/dump.zst", f"{folder}/manifest.json"]
    verify = run_dbops(["verify", "--from", f"s3://{bucket}/{folder}", *_s3_args(minio_server)], env, tmp_path)
    assert verify.code == 0, verify.stderr


def test_default_bound_keeps_a_fresh_upload_of_a_concurrent_run(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    """A run of the same backup still uploading (younger than 24 h) is not cut off by a retry."""
    server, source = database
    server.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", source)
    client = minio_server.client()
    key = f"p/local/{source}/b1/dump.zst"
    _start_upload(client, bucket, key)
    env = runner_env(server, **minio_server.env())
    run = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "b1",
                     *_s3_args(minio_server)], env, tmp_path)
    assert run.code == 0, run.stderr
    assert run.result["abortedIncompleteUploads"] == 0
    assert _uploads(client, bucket) == [key]


def test_delete_backup_aborts_stale_uploads_in_its_folder_and_zero_turns_it_off(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    server, _source = database
    client = minio_server.client()
    folder = "p/team/app/b1"
    client.put_object(Bucket=bucket, Key=f"{folder}/manifest.json", Body=b"{}")
    _start_upload(client, bucket, f"{folder}/dump.zst")
    _start_upload(client, bucket, "p/team/app/b10/dump.zst")
    time.sleep(1.5)
    env = runner_env(server, **minio_server.env())
    off = run_dbops(["delete-backup", "--from", f"s3://{bucket}/{folder}", "--abort-incomplete-after", "0",
                     *_s3_args(minio_server)], env, tmp_path)
    assert off.code == 0, off.stderr
    assert off.result["abortedIncompleteUploads"] == 0
    assert _uploads(client, bucket) == [f"{folder}/dump.zst", "p/team/app/b10/dump.zst"]

    _start_upload(client, bucket, f"{folder}/dump.zst")  # nothing left to delete: the uploads still go
    time.sleep(1.5)
    run = run_dbops(["delete-backup", "--from", f"s3://{bucket}/{folder}", "--abort-incomplete-after", "1s",
                     *_s3_args(minio_server)], env, tmp_path)
    assert run.code == 0, run.stderr
    assert run.result["abortedIncompleteUploads"] == 2
    assert _uploads(client, bucket) == ["p/team/app/b10/dump.zst"]


def test_bad_bound_is_a_user_error_naming_the_flag(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, tmp_path: Path
) -> None:
    server, source = database
    run = run_dbops(["backup", "--dbname", source, "--storage", f"s3://{bucket}/p",
                     "--abort-incomplete-after", "soon", *_s3_args(minio_server)],
                    runner_env(server, **minio_server.env()), tmp_path)
    assert run.code == 2
    assert "--abort-incomplete-after" in run.result["message"]
    assert "Traceback" not in run.stderr


def test_directory_storage_removes_stale_partial_files_only_in_its_folder(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, source = database
    server.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", source)
    root = tmp_path / "backups"
    own = root / "local" / source / "b1" / ".dump.zst.partial-deadbeef"
    sibling = root / "local" / source / "b10" / ".dump.zst.partial-cafebabe"
    for path in (own, sibling):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half")
    time.sleep(1.5)
    run = run_dbops(["backup", "--dbname", source, "--storage", str(root), "--name", "b1",
                     "--abort-incomplete-after", "1s"], runner_env(server), tmp_path)
    assert run.code == 0, run.stderr
    assert run.result["abortedIncompleteUploads"] == 1
    assert not own.exists() and sibling.exists()
    assert sorted(p.name for p in own.parent.iterdir()) == ["dump.zst", "manifest.json"]
