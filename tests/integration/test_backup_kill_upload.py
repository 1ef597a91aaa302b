"""R1: a backup runner SIGKILLed at ≈10 %, 50 % and 99 % of its upload (measured in bytes uploaded) leaves no
manifest, no object at a final key and no result claiming success; the next backup of the same name removes
or aborts what the killed runs left, and its backup restores to the source's data.

Single-file (custom) and directory format, on MinIO (bytes counted by a rate-limited proxy) and on directory
storage (the runner single-stepped between SIGSTOPs, its folder's bytes counted), PostgreSQL 15 and 18.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration import datasets, storage_sweep, upload_meter
from tests.integration.runner_cli import popen_dbops, run_dbops, runner_env

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
FRACTIONS = (0.10, 0.50, 0.99)
RATE = 1_500_000  # bytes/s to MinIO: an upload of ~10 MB takes seconds, so each fraction is caught
NAME = "nightly"


@pytest.fixture
def link(minio_server: MinioServer) -> Iterator[upload_meter.MeteredLink]:
    meter = upload_meter.MeteredLink(minio_server.endpoint, RATE)
    yield meter
    meter.close()


def _fill(server: PostgresServer, source: str) -> None:
    # The realistic dataset (FKs both ways, partitions, sequences, large objects) plus one table of
    # hard-to-compress rows: ~10 MB stored with zstd level 1, over one 8 MiB multipart part.
    datasets.create_dataset(server, source, users=2000, bookings=20000, events=10000)
    server.psql("CREATE TABLE app.ledger AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || "
                "md5((g * 13)::text) AS h FROM generate_series(1, 200000) g", source)


def _stored_bytes(manifest: dict[str, Any]) -> int:
    return sum(int(item["sizeBytes"]) for item in manifest["objects"])


def _final_keys(keys: list[str]) -> list[str]:
    """Keys a reader could take for (part of) a backup: the manifest and dump objects; not the lease, not
    hidden partial files."""
    return [key for key in keys if not key.rsplit("/", 1)[-1].startswith(".")]


class _Target:
    """Where the backups go and how the upload's progress is measured there."""

    def __init__(self, kind: str, server: PostgresServer, source: str, tmp_path: Path,
                 minio: MinioServer | None, bucket: str, link: upload_meter.MeteredLink | None) -> None:
        self.kind, self.source, self.tmp_path = kind, source, tmp_path
        self.minio, self.bucket, self.link = minio, bucket, link
        self.env = runner_env(server, **(minio.env() if minio else {}))
        self.root = tmp_path / "backups"

    def args(self, name: str, fmt: str, *, metered: bool) -> list[str]:
        common = ["backup", "--dbname", self.source, "--name", name, "--format", fmt, "--commit-lease-ttl", "2s",
                  "--abort-incomplete-after", "1s", *(["--jobs", "2"] if fmt == "directory" else [])]
        if self.kind == "dir":  # zstd level 6 (not 1): slices of the single-stepped runner write less
            return [*common, "--storage", str(self.root), "--compression-level", "6"]
        assert self.minio is not None and self.link is not None
        endpoint = self.link.endpoint if metered else self.minio.endpoint
        return [*common, "--storage", f"s3://{self.bucket}/p", "--s3-endpoint", endpoint, "--s3-force-path-style"]

    def folder(self, name: str) -> str:
        return f"p/local/{self.source}/{name}" if self.kind == "s3" else f"local/{self.source}/{name}"

    def uri(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.folder(name)}" if self.kind == "s3" else str(self.root / self.folder(name))

    def s3_flags(self) -> list[str]:
        assert self.minio is not None
        return ["--s3-endpoint", self.minio.endpoint, "--s3-force-path-style"] if self.kind == "s3" else []

    def keys(self, name: str) -> list[str]:
        """Every key under the backup's folder, relative to it."""
        if self.kind == "dir":
            folder = self.root / self.folder(name)
            return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) \
                if folder.exists() else []
        assert self.minio is not None
        prefix = self.folder(name) + "/"
        pages = self.minio.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(str(o["Key"])[len(prefix):] for page in pages for o in page.get("Contents", []))

    def uploads(self, name: str) -> int:
        if self.kind == "dir":
            return 0
        assert self.minio is not None
        found = self.minio.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sum(1 for upload in found if str(upload["Key"]).startswith(self.folder(name) + "/"))

    def manifest(self, name: str) -> dict[str, Any]:
        if self.kind == "dir":
            return dict(json.loads((self.root / self.folder(name) / "manifest.json").read_text()))
        assert self.minio is not None
        body = self.minio.client().get_object(Bucket=self.bucket, Key=f"{self.folder(name)}/manifest.json")["Body"]
        return dict(json.loads(body.read()))

    def sweep(self) -> storage_sweep.Sweep:
        if self.kind == "dir":
            return storage_sweep.sweep_directory(self.root)
        assert self.minio is not None
        return storage_sweep.sweep_s3(self.minio.client(), self.bucket)

    def kill_at(self, name: str, fmt: str, total: int, fraction: float) -> tuple[float, dict[str, Any]]:
        """Start a backup and SIGKILL it at ``fraction`` of ``total`` bytes uploaded; (fraction reached, result)."""
        result_path = self.tmp_path / f"killed-{fmt}-{fraction}.json"
        process = popen_dbops(self.args(name, fmt, metered=True), self.env, result_path)
        try:
            if self.kind == "s3":
                assert self.link is not None
                link = self.link
                link.reset()
                reached = upload_meter.kill_at(process, lambda: link.sent, total, fraction)
            else:
                folder = self.root / self.folder(name)
                progress: Callable[[], int] = lambda: upload_meter.folder_bytes(folder)  # noqa: E731
                reached = upload_meter.kill_at_stepped(process, progress, total, fraction)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == -9, f"the runner was not SIGKILLed: exit {process.returncode}"
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        return reached, result


@pytest.mark.parametrize("kind", ["s3", "dir"])
@pytest.mark.parametrize("fmt", ["custom", "directory"])
def test_a_runner_sigkilled_mid_upload_leaves_nothing_at_a_final_key_and_the_next_run_cleans_up(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, link: upload_meter.MeteredLink,
    tmp_path: Path, fmt: str, kind: str
) -> None:
    server, source = database
    _fill(server, source)
    target = _Target(kind, server, source, tmp_path, minio_server, bucket, link)
    # The same dump's stored size, from a committed backup of the unchanged database: 100 % of the upload.
    baseline = run_dbops(target.args("baseline", fmt, metered=False), target.env, tmp_path)
    assert baseline.code == 0, baseline.output
    total = _stored_bytes(target.manifest("baseline"))

    reached = []
    for fraction in FRACTIONS:
        at, result = target.kill_at(NAME, fmt, total, fraction)
        reached.append(at)
        left = target.keys(NAME)
        assert _final_keys(left) == [], f"killed at {at:.0%}: objects at final keys {left}"
        assert result.get("ok") is not True and result.get("phase") != "Succeeded", result
        sweep = target.sweep()
        storage_sweep.assert_no_orphan_manifests(sweep)
        assert sweep.in_folder(target.folder(NAME)).orphan_objects == [], sweep
    print(f"{fmt} on {kind}: killed at {', '.join(f'{r:.1%}' for r in reached)} of {total} bytes")
    assert reached[0] < 0.5 and 0.4 < reached[1] < 0.9 and reached[2] >= 0.99

    time.sleep(1.5)  # the killed runs' uploads are older than --abort-incomplete-after 1s now
    expected = datasets.table_checksums(server, source)
    final = run_dbops(target.args(NAME, fmt, metered=False), target.env, tmp_path)
    assert final.code == 0, final.output
    assert final.result["abortedIncompleteUploads"] >= 1, final.result  # the killed runs' uploads / partial files
    manifest = target.manifest(NAME)
    assert target.keys(NAME) == sorted(["manifest.json", *(item["name"] for item in manifest["objects"])])
    assert target.uploads(NAME) == 0
    sweep = target.sweep()
    storage_sweep.assert_no_orphan_manifests(sweep)
    assert sweep.in_folder(target.folder(NAME)) == storage_sweep.Sweep(sweep.manifests, sweep.objects_checked)

    server.psql("UPDATE app.ledger SET h = 'changed after the backup' WHERE id % 1000 = 0", source)
    verify = run_dbops(["verify", "--from", target.uri(NAME), *target.s3_flags()], target.env, tmp_path)
    assert verify.code == 0, verify.output
    restored = f"{source}_r"
    restore = run_dbops(["restore", "--from", target.uri(NAME), "--dbname", restored, "--create",
                         *(["--jobs", "2"] if fmt == "directory" else []), *target.s3_flags()], target.env, tmp_path)
    try:
        assert restore.code == 0, restore.output
        assert datasets.table_checksums(server, restored) == expected
    finally:
        server.drop_database(restored)
