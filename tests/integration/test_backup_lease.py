"""The commit lease of a backup folder on MinIO: a SIGKILLed holder is taken over after the short ttl, a live
holder keeps it past the ttl by renewing, and a holder that lost it never deletes the new holder's lease."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration import datasets
from tests.integration.runner_cli import Run, run_dbops, runner_env

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

LEASE = ".dbops-lock"
UPLOAD_BYTES_PER_SECOND = 192 * 1024
TRICKLE_BYTES_PER_SECOND = 8 * 1024
TTL = "4s"


class SlowLink:
    """A TCP proxy to MinIO that forwards requests at a set rate: a slow network to the object store.

    Data is forwarded in chunks of at most 50 ms at the current rate, so a small request (a lease renewal)
    passes quickly even while :meth:`trickle` slows the link to a crawl for uploads.
    """

    def __init__(self, upstream: str, rate: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self.rate = rate
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, limited: bool) -> None:
        with contextlib.suppress(OSError):
            while True:
                rate = self.rate if limited else 0
                data = source.recv(min(16 * 1024, max(256, rate // 20)) if rate else 64 * 1024)
                if not data:
                    break
                sink.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    @contextlib.contextmanager
    def trickle(self, rate: int = TRICKLE_BYTES_PER_SECOND) -> Iterator[None]:
        """Slow uploads to ``rate`` for the block: a holder of the lease cannot finish meanwhile (its dump is
        megabytes), yet its lease renewals (a kilobyte each) still pass within a fraction of a second."""
        normal, self.rate = self.rate, rate
        try:
            yield
        finally:
            self.rate = normal

    def close(self) -> None:
        self._closed = True
        self._listener.close()


@pytest.fixture
def slow_link(minio_server: MinioServer) -> Iterator[SlowLink]:
    link = SlowLink(minio_server.endpoint, UPLOAD_BYTES_PER_SECOND)
    yield link
    link.close()


class Runner:
    """A ``dbops backup`` process with its output in files (it may be killed, paused or left to finish)."""

    def __init__(self, args: list[str], env: dict[str, str], workdir: Path, label: str) -> None:
        self.result_path = workdir / f"{label}.json"
        self._out = open(workdir / f"{label}.out", "w+")  # noqa: SIM115
        self._err = open(workdir / f"{label}.err", "w+")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, "-m", "dbops.cli.main", *args, "--result-path",
                                         str(self.result_path)], env=env, stdout=self._out, stderr=self._err,
                                        text=True)

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read()

    def wait(self, timeout: float = 300) -> Run:
        self.process.wait(timeout=timeout)
        result = json.loads(self.result_path.read_text()) if self.result_path.exists() else {}
        self._out.seek(0)
        return Run(code=self.process.returncode, stdout=self._out.read(), stderr=self.stderr(), result=result)


def _until(what: str, predicate: Callable[[], bool], timeout: float = 120, runner: Runner | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if runner is not None and runner.process.poll() is not None:
            raise AssertionError(f"the runner ended before {what}: {runner.stderr()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def _lease(client: Any, bucket: str, folder: str) -> tuple[str, dict[str, Any]] | None:
    try:
        response = client.get_object(Bucket=bucket, Key=f"{folder}/{LEASE}")
    except client.exceptions.NoSuchKey:
        return None
    return str(response["ETag"]), json.loads(response["Body"].read())


def _keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def _backup_args(source: str, bucket: str, endpoint: str, ttl: str, *extra: str) -> list[str]:
    return ["backup", "--dbname", source, "--storage", f"s3://{bucket}/p", "--name", "nightly", "--format",
            "directory", "--jobs", "2", "--commit-lease-ttl", ttl, "--s3-endpoint", endpoint,
            "--s3-force-path-style", *extra]


def _realistic(server: PostgresServer, source: str, noise_rows: int = 60000) -> None:
    # Many objects of many kinds (FKs both ways through a cycle, partitions, sequences, large objects), and
    # enough rows that the upload over the slow link takes many seconds.
    datasets.create_dataset(server, source, users=4000, bookings=40000, events=30000)
    server.psql("ALTER TABLE app.users ADD COLUMN last_booking integer REFERENCES app.bookings(id);"
                "UPDATE app.users u SET last_booking = (SELECT max(id) FROM app.bookings b WHERE b.user_id = u.id);"
                "CREATE TABLE app.noise AS SELECT g, md5(g::text) || md5((g * 7)::text) AS h "
                f"FROM generate_series(1, {noise_rows}) g;", source)


def _verified_and_restored(server: PostgresServer, source: str, minio: MinioServer, folder_uri: str,
                           tmp_path: Path) -> None:
    env = runner_env(server, **minio.env())
    s3 = ["--s3-endpoint", minio.endpoint, "--s3-force-path-style"]
    verify = run_dbops(["verify", "--from", folder_uri, *s3], env, tmp_path)
    assert verify.code == 0, verify.output
    target = f"{source}_r"
    restore = run_dbops(["restore", "--from", folder_uri, "--dbname", target, "--create", *s3], env, tmp_path)
    try:
        assert restore.code == 0, restore.output
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
    finally:
        server.drop_database(target)


@dataclasses.dataclass
class Scene:
    """A realistic source database and where its backup "nightly" goes on MinIO."""

    server: PostgresServer
    source: str
    bucket: str
    folder: str
    client: Any
    env: dict[str, str]
    workdir: Path

    def lease(self) -> tuple[str, dict[str, Any]] | None:
        """The lease object's ETag and document (None: no lease)."""
        return _lease(self.client, self.bucket, self.folder)

    def start(self, endpoint: str, ttl: str, pod: str, label: str) -> Runner:
        """A backup run (pod name ``pod``) through ``endpoint``, once it holds the commit lease."""
        runner = Runner(_backup_args(self.source, self.bucket, endpoint, ttl), {**self.env, "DBOPS_POD_NAME": pod},
                        self.workdir, label)
        _until(f"the run of {pod} holds the lease", lambda: self.lease() is not None, runner=runner)
        return runner


def _scene(database: tuple[PostgresServer, str], minio: MinioServer, bucket: str, tmp_path: Path) -> Scene:
    server, source = database
    _realistic(server, source)
    return Scene(server, source, bucket, f"p/local/{source}/nightly", minio.client(),
                 runner_env(server, **minio.env()), tmp_path)


class LeaseSampler:
    """Reads the lease object every 0.2 s in a thread: (monotonic time, ETag, runId) of each look."""

    def __init__(self, scene: Scene) -> None:
        self.samples: list[tuple[float, str, str]] = []
        self._scene = scene
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            current = self._scene.lease()
            if current is not None:
                self.samples.append((time.monotonic(), current[0], current[1]["runId"]))
            time.sleep(0.2)

    def versions(self) -> int:
        return len({etag for _, etag, _ in self.samples})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_a_sigkilled_runner_holding_the_lease_mid_upload_is_taken_over_after_the_short_ttl(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, slow_link: SlowLink,
    tmp_path: Path
) -> None:
    scene = _scene(database, minio_server, bucket, tmp_path)
    server, source, folder, client, env = scene.server, scene.source, scene.folder, scene.client, scene.env
    killed = scene.start(slow_link.endpoint, "4s", "nightly-29412-7xk2p", "killed")
    _until("the first run uploads dump objects", lambda: any(
        "/dump/" in str(u["Key"]) for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])),
        runner=killed)
    killed.process.send_signal(signal.SIGKILL)  # node lost, OOM: no cleanup, the lease stays
    killed.wait()
    held = _lease(client, bucket, folder)
    assert held is not None and held[1]["pod"] == "nightly-29412-7xk2p"
    assert "manifest.json" not in " ".join(_keys(client, bucket))
    assert not [k for k in _keys(client, bucket) if "/dump/" in k]  # R1: uploads only, nothing at a final key
    server.psql("UPDATE app.bookings SET note = 'changed after the kill' WHERE id % 100 = 0", source)

    started = time.monotonic()
    retry = run_dbops(_backup_args(source, bucket, minio_server.endpoint, "4s"),
                      {**env, "DBOPS_POD_NAME": "nightly-29412-q8d3m"}, tmp_path)
    took = time.monotonic() - started
    assert retry.code == 0, retry.output
    # Judged stale by the holder's 4 s ttl, not the 24 h bound of a lease that is never renewed (the wall-clock
    # bound is loose: a loaded machine slows the retry's own backup, not its wait).
    assert "not renewed for 4 s" in retry.stderr, retry.stderr
    assert took < 600, f"the retry took {took:.0f} s: it must not wait for a long stale bound"
    assert "took over a stale commit lease" in retry.stderr and "nightly-29412-7xk2p" in retry.stderr
    assert retry.result["tookOverStaleLease"]["pod"] == "nightly-29412-7xk2p"
    assert retry.result["tookOverStaleLease"]["runId"] == held[1]["runId"]
    assert "nightly-29412-7xk2p" in retry.result["message"]
    keys = _keys(client, bucket)
    assert f"{folder}/{LEASE}" not in keys  # released
    manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{folder}/manifest.json")["Body"].read())
    assert sorted(f"{folder}/{o['name']}" for o in manifest["objects"]) == [k for k in keys if "/dump/" in k]
    _verified_and_restored(server, source, minio_server, f"s3://{bucket}/{folder}", tmp_path)


def test_of_two_concurrent_runs_the_renewing_holder_commits_and_the_other_fails_concurrent_run(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, slow_link: SlowLink,
    tmp_path: Path
) -> None:
    scene = _scene(database, minio_server, bucket, tmp_path)
    ttl = 4.0
    # The holder's uploads trickle until the other run gave up, so under any load the holder is still
    # uploading (and renewing) while the other run waits: it cannot commit first and turn the other's
    # ConcurrentRun into AlreadyExists.
    with slow_link.trickle():
        holder = scene.start(slow_link.endpoint, f"{ttl:g}s", "backup-a-5fz9w", "holder")
        sampler = LeaseSampler(scene)
        try:
            other = run_dbops(_backup_args(scene.source, bucket, minio_server.endpoint, f"{ttl:g}s",
                                           "--commit-lease-wait", "3s"),
                              {**scene.env, "DBOPS_POD_NAME": "backup-b-2mq4c"}, tmp_path)
            assert holder.process.poll() is None, f"the holder ended while the other run waited: {holder.stderr()}"
            # Held past several ttls, renewed all along (4 versions: the holder's own and 3 renewals).
            _until("the holder renewed its lease 3 times", lambda: sampler.versions() >= 4, runner=holder)
            _until("the holder held its lease for 3 ttls",
                   lambda: sampler.samples[-1][0] - sampler.samples[0][0] > 3 * ttl, runner=holder)
        except BaseException:
            sampler.stop()
            raise
    first = holder.wait()
    sampler.stop()
    assert other.code == 3, other.output
    assert other.result["reason"] == "ConcurrentRun"
    assert "backup-a-5fz9w" in other.result["message"] and "started" in other.result["message"]
    assert first.code == 0, first.output
    # One holder from start to release, renewing (a takeover would show a second runId).
    assert len({run_id for _, _, run_id in sampler.samples}) == 1, sampler.samples
    assert f"{scene.folder}/{LEASE}" not in _keys(scene.client, bucket)
    keys = _keys(scene.client, bucket)
    manifests = [k for k in keys if k.endswith("manifest.json")]
    assert manifests == [f"{scene.folder}/manifest.json"], keys  # one commit: the other run wrote nothing
    _verified_and_restored(scene.server, scene.source, minio_server, f"s3://{bucket}/{scene.folder}", tmp_path)


def test_a_paused_holder_loses_its_lease_and_leaves_the_new_holders_lease_and_objects_alone(
    database: tuple[PostgresServer, str], minio_server: MinioServer, bucket: str, slow_link: SlowLink,
    tmp_path: Path
) -> None:
    # A ttl of 4 s rather than 2 s: the taker's own renewals (every ttl/3) must not fall behind on a loaded machine.
    scene = _scene(database, minio_server, bucket, tmp_path)
    server, source, folder, client, env = scene.server, scene.source, scene.folder, scene.client, scene.env
    paused = scene.start(slow_link.endpoint, TTL, "backup-a-5fz9w", "paused")
    first_lease = scene.lease()
    assert first_lease is not None
    paused.process.send_signal(signal.SIGSTOP)  # a frozen node: no renewals, no commits
    try:
        taker = Runner(_backup_args(source, bucket, slow_link.endpoint, TTL),
                       {**env, "DBOPS_POD_NAME": "backup-b-2mq4c"}, tmp_path, "taker")

        def taken_over() -> bool:
            current = scene.lease()
            return current is not None and current[1]["runId"] != first_lease[1]["runId"]

        _until("the second run takes the stale lease over", taken_over, runner=taker)
    finally:
        paused.process.send_signal(signal.SIGCONT)
    loser = paused.wait()
    assert loser.code == 3, loser.output
    assert loser.result["reason"] == "ConcurrentRun"
    # Two true accounts, depending on where the pause froze the run: it found the lease taken over (named),
    # or it noticed on its own clock that it went unrenewed past its ttl before it looked (SIGSTOP between its
    # last look at the store and its commit check). Either way it commits nothing (checked below).
    message = loser.result["message"]
    assert ("lost its commit lease" in message and "backup-b-2mq4c" in message) or re.search(
        r"the commit lease could not be renewed for \d+ s \(ttl 4 s\); another run may take it over, so nothing "
        "more is committed", message), message
    if taker.process.poll() is None:  # the loser's release did not delete the new holder's lease
        current = _lease(client, bucket, folder)
        assert current is not None and current[1]["pod"] == "backup-b-2mq4c"
    winner = taker.wait()
    assert winner.code == 0, winner.output
    assert winner.result["tookOverStaleLease"]["pod"] == "backup-a-5fz9w"
    keys = _keys(client, bucket)
    manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{folder}/manifest.json")["Body"].read())
    assert sorted(f"{folder}/{o['name']}" for o in manifest["objects"]) == [k for k in keys if "/dump/" in k]
    _verified_and_restored(server, source, minio_server, f"s3://{bucket}/{folder}", tmp_path)


def test_a_sigkilled_runner_on_directory_storage_is_taken_over_after_the_short_ttl(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, source = database
    _realistic(server, source, noise_rows=100000)
    root = tmp_path / "backups"
    folder = root / "local" / source / "nightly"
    env = runner_env(server)
    # zstd level 19: compressing the files takes seconds, the time the lease is held while they are stored
    args = ["backup", "--dbname", source, "--storage", str(root), "--name", "nightly", "--format", "directory",
            "--jobs", "2", "--compression-level", "19", "--commit-lease-ttl", "3s"]
    killed = Runner(args, {**env, "DBOPS_POD_NAME": "nightly-29412-7xk2p"}, tmp_path, "killed")
    _until("the first run holds the lease and writes dump files",
           lambda: (folder / LEASE).exists() and any(".partial-" in p.name for p in folder.glob("dump/.*")),
           runner=killed)
    killed.process.send_signal(signal.SIGKILL)
    killed.wait()
    assert json.loads((folder / LEASE).read_text())["pod"] == "nightly-29412-7xk2p"
    assert not (folder / "manifest.json").exists()
    assert not [p for p in folder.glob("dump/*") if not p.name.startswith(".")]  # R1: partial files only

    retry = run_dbops([*args[:-4], *args[-2:]], {**env, "DBOPS_POD_NAME": "nightly-29412-q8d3m"}, tmp_path)
    assert retry.code == 0, retry.output
    assert "took over a stale commit lease" in retry.stderr and "nightly-29412-7xk2p" in retry.stderr
    assert retry.result["tookOverStaleLease"]["pod"] == "nightly-29412-7xk2p"
    assert not (folder / LEASE).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(f"{LEASE}.")]  # nothing left aside
    verify = run_dbops(["verify", "--from", str(folder)], env, tmp_path)
    assert verify.code == 0, verify.output
    target = f"{source}_r"
    restore = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--create"], env, tmp_path)
    try:
        assert restore.code == 0, restore.output
        assert datasets.table_checksums(server, target) == datasets.table_checksums(server, source)
    finally:
        server.drop_database(target)


def test_bad_lease_settings_are_refused_naming_the_flag(tmp_path: Path) -> None:
    for flag, value in (("--commit-lease-ttl", "0s"), ("--commit-lease-ttl", "soon"), ("--commit-lease-wait", "-1m")):
        run = run_dbops(["backup", "--dbname", "nowhere", "--storage", str(tmp_path / "b"), f"{flag}={value}"],
                        runner_env(), tmp_path)
        assert run.code == 2, run.output
        assert flag in run.result["message"] and "Traceback" not in run.stderr


def test_release_after_a_takeover_leaves_the_new_holders_lease_on_minio(
    minio_server: MinioServer, bucket: str
) -> None:
    # In-process on the real store: the old holder's release must not delete the lease another run took over.
    from dbops.runner import lease, storage

    location = storage.parse_location(f"s3://{bucket}/p/ns/db/b-{uuid.uuid4().hex[:6]}")
    options = storage.S3Options(endpoint=minio_server.endpoint, region=minio_server.region, force_path_style=True)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in minio_server.env().items():
            patch.setenv(name, value)
        store = storage.open_storage(location, options)
        old = lease.acquire(store, ttl=1.5, wait=0)
        old._stop.set()  # stalls: renews no more
        old._thread.join()
        new = lease.acquire(store, ttl=1.5, wait=10)
        assert new.took_over is not None and new.took_over.run_id == old.run_id
        old.release()
        assert json.loads(store.get_bytes(lease.LEASE_KEY))["runId"] == new.run_id
        with pytest.raises(Exception, match="lost its commit lease") as raised:
            old.check()
        assert getattr(raised.value, "reason", "") == "ConcurrentRun"
        new.release()
        assert not store.exists(lease.LEASE_KEY)
