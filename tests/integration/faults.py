"""Fault scenarios shared by tests/integration/test_faults.py (one run each) and bench/faults_bench.py (many).

Each scenario starts a runner command, injects one fault while it works, lets the fault end, retries the
command as a Job's backoff would, and checks that nothing is half-written: a manifest only with objects that
verify, a restore that reports success only with the source's data. It returns whether the outcome was
correct and how long recovery took (from the end of the fault to a verified result).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.integration import datasets, storage_sweep
from tests.integration.runner_cli import Run, finished, popen_dbops, run_dbops, runner_env

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

RETRIES = 5
TRANSIENT = 3


@dataclasses.dataclass
class Outcome:
    """One fault run: correct or not, seconds from the end of the fault to a verified result, and why."""

    fault: str
    correct: bool
    recover_seconds: float
    first_code: int | None
    detail: str = ""
    folder: str = ""
    """The backup folder (bucket key prefix) the run wrote, if any."""
    sweep: storage_sweep.Sweep | None = None
    """R3: what the sweep of the whole bucket found after the run (:func:`run`)."""


@dataclasses.dataclass
class Bed:
    """A source database with a table big enough that every command is still working when the fault hits."""

    server: PostgresServer
    minio: MinioServer
    bucket: str
    source: str
    workdir: Path
    checksums: dict[str, Any] = dataclasses.field(default_factory=dict)
    backup_uri: str = ""

    def env(self) -> dict[str, str]:
        return runner_env(self.server, **self.minio.env())

    def s3(self) -> list[str]:
        return ["--s3-endpoint", self.minio.endpoint, "--s3-force-path-style"]


def prepare(server: PostgresServer, minio: MinioServer, workdir: Path, rows: int = 1_500_000) -> Bed:
    """Create the source database, its data, the bucket and one committed backup to restore from."""
    source = f"faults_{uuid.uuid4().hex[:8]}"
    server.create_database(source)
    datasets.create_dataset(server, source, users=500, bookings=5000, events=1000)
    server.psql(f"CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v "
                f"FROM generate_series(1, {rows}) g", source)
    bucket = f"faults-{uuid.uuid4().hex[:8]}"
    minio.client().create_bucket(Bucket=bucket)
    bed = Bed(server, minio, bucket, source, workdir)
    bed.checksums = datasets.table_checksums(server, source)
    base = backup(bed, "base")
    assert base.code == 0, base.stderr
    bed.backup_uri = base.result["artifact"]["manifestUri"]
    return bed


def backup(bed: Bed, name: str, storage: str = "", extra: tuple[str, ...] = ()) -> Run:
    storage = storage or f"s3://{bed.bucket}/f"
    return run_dbops(["backup", "--dbname", bed.source, "--storage", storage, "--name", name, *bed.s3(), *extra],
                     bed.env(), bed.workdir)


def _popen(bed: Bed, args: list[str]) -> tuple[subprocess.Popen[str], Path]:
    path = bed.workdir / f"result-{uuid.uuid4().hex[:8]}.json"
    return popen_dbops(args, bed.env(), path), path


def _wait(what: str, predicate: Callable[[], bool], process: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"the command ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _uploads(bed: Bed, prefix: str) -> int:
    """Incomplete multipart uploads under a prefix (MinIO lists by whole names only: filter here)."""
    uploads = bed.minio.client().list_multipart_uploads(Bucket=bed.bucket).get("Uploads", [])
    return sum(1 for upload in uploads if str(upload["Key"]).startswith(prefix))


def _uploading(bed: Bed) -> Callable[[str], Callable[[], bool]]:
    def for_folder(folder: str) -> Callable[[], bool]:
        def check() -> bool:
            with contextlib.suppress(Exception):
                return _uploads(bed, folder + "/") > 0
            return False
        return check
    return for_folder


def _dumping(bed: Bed) -> Callable[[str], Callable[[], bool]]:
    """pg_dump is copying the big table (its session shows a COPY of it)."""
    def for_folder(_folder: str) -> Callable[[], bool]:
        def check() -> bool:
            with contextlib.suppress(subprocess.CalledProcessError):
                return bed.server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{bed.source}' "
                                       "AND application_name = 'pg_dump' AND query LIKE 'COPY public.big %'") != "0"
            return False
        return check
    return for_folder


def _session(bed: Bed, dbname: str, application: str) -> Callable[[], bool]:
    def check() -> bool:
        with contextlib.suppress(subprocess.CalledProcessError):
            return bed.server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' "
                                   f"AND application_name = '{application}'") != "0"
        return False
    return check


def _backup_committed_correctly(bed: Bed, folder: str) -> tuple[bool, str]:
    """A manifest exists and the backup verifies (decoded), or nothing claims to be a backup."""
    client = bed.minio.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bed.bucket, Prefix=f"{folder}/").get("Contents", [])]
    if f"{folder}/manifest.json" not in keys:
        return True, "no manifest"
    verify = run_dbops(["verify", "--from", f"s3://{bed.bucket}/{folder}", *bed.s3()], bed.env(), bed.workdir)
    return verify.code == 0, f"verify exit {verify.code}: {verify.result.get('message', '')}"


def _retry(command: Callable[[], Run]) -> Run:
    """Run until success or a non-transient failure, as a Job's backoff would (at most RETRIES times)."""
    run = command()
    for _ in range(RETRIES - 1):
        if run.code != TRANSIENT:
            break
        time.sleep(1)
        run = command()
    return run


def _backup_under_fault(bed: Bed, fault: str, started: Callable[[str], Callable[[], bool]],
                        inject: Callable[[], None], storage: str = "", extra: tuple[str, ...] = ()) -> Outcome:
    name = f"{fault}-{uuid.uuid4().hex[:6]}"
    storage = storage or f"s3://{bed.bucket}/f"
    folder = f"f/local/{bed.source}/{name}"
    args = ["backup", "--dbname", bed.source, "--storage", storage, "--name", name, *bed.s3(), *extra]
    process, path = _popen(bed, args)
    try:
        _wait(f"{fault} to be injectable", started(folder), process)
        inject()
        restored = time.monotonic()
        first = finished(process, *process.communicate(timeout=600), path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if storage.startswith("s3://"):
        ok, detail = _backup_committed_correctly(bed, folder)
        if not ok:
            return Outcome(fault, False, 0.0, first.code, f"half-written after the fault: {detail}", folder)
    if first.code not in (0, TRANSIENT):
        return Outcome(fault, False, 0.0, first.code, f"not transient: {first.result.get('message')}", folder)
    final = first if first.code == 0 else _retry(lambda: backup(bed, name, storage, extra))
    recover = time.monotonic() - restored
    if final.code != 0:
        return Outcome(fault, False, recover, first.code, f"retry failed: {final.result.get('message')}", folder)
    ok, detail = _backup_committed_correctly(bed, folder)
    left = _uploads(bed, folder + "/")
    return Outcome(fault, ok, recover, first.code, f"{detail}; incomplete uploads left: {left}", folder)


def minio_killed_mid_upload(bed: Bed, down_seconds: float = 2.0) -> Outcome:
    """MinIO SIGKILLed while a part upload is in flight, back after ``down_seconds``."""
    def inject() -> None:
        bed.minio.kill()
        time.sleep(down_seconds)
        bed.minio.start()
    return _backup_under_fault(bed, "minio-mid-upload", _uploading(bed), inject)


def postgres_restarted_mid_dump(bed: Bed) -> Outcome:
    """PostgreSQL restarted (fast shutdown: sessions cut) while pg_dump streams."""
    return _backup_under_fault(bed, "postgres-mid-dump", _dumping(bed), bed.server.restart)


def network_cut_mid_dump(bed: Bed, cut_seconds: float = 3.0) -> Outcome:
    """Every server process stopped (SIGSTOP: the connection goes silent) for ``cut_seconds``, then resumed."""
    def inject() -> None:
        bed.server.pause(True)
        try:
            time.sleep(cut_seconds)
        finally:
            bed.server.pause(False)
    return _backup_under_fault(bed, "network-cut-mid-dump", _dumping(bed), inject)


def _children(pid: int, command: str) -> list[int]:
    """PIDs of the direct children of ``pid`` running ``command`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            name = text[text.index("(") + 1:text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            if ppid == pid and name == command:
                found.append(int(stat.parent.name))
    return found


def _producer_killed(bed: Bed, fault: str, inject: Callable[[subprocess.Popen[str]], None]) -> Outcome:
    """R2: the producer (pg_dump) dies mid-stream while the upload runs: the backup fails (non-zero exit),
    its multipart upload is aborted, nothing is left in its folder; then a retry makes the backup."""
    name = f"{fault}-{uuid.uuid4().hex[:6]}"
    folder = f"f/local/{bed.source}/{name}"
    process, path = _popen(bed, ["backup", "--dbname", bed.source, "--storage", f"s3://{bed.bucket}/f",
                                 "--name", name, *bed.s3()])
    dumping, uploading = _dumping(bed)(folder), _uploading(bed)(folder)
    try:
        _wait(f"{fault} to be injectable", lambda: dumping() and uploading(), process)
        inject(process)
        ended = time.monotonic()
        first = finished(process, *process.communicate(timeout=600), path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    client = bed.minio.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bed.bucket, Prefix=f"{folder}/").get("Contents", [])]
    left = _uploads(bed, folder + "/")
    sessions = bed.server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{bed.source}' "
                               "AND application_name = 'pg_dump'")
    if first.code == 0 or keys or left or sessions != "0":
        return Outcome(fault, False, 0.0, first.code, f"exit {first.code}, objects {keys}, {left} incomplete "
                       f"uploads, {sessions} pg_dump sessions left: {first.result.get('message')}", folder)
    final = _retry(lambda: backup(bed, name))
    recover = time.monotonic() - ended
    if final.code != 0:
        return Outcome(fault, False, recover, first.code, f"retry failed: {final.result.get('message')}", folder)
    ok, detail = _backup_committed_correctly(bed, folder)
    return Outcome(fault, ok, recover, first.code, f"{first.result.get('reason')}; then {detail}", folder)


def producer_terminated(bed: Bed) -> Outcome:
    """pg_dump's backend terminated (``pg_terminate_backend``) while it streams and the upload runs."""
    def inject(_process: subprocess.Popen[str]) -> None:
        terminated = bed.server.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                     f"WHERE datname = '{bed.source}' AND application_name = 'pg_dump'")
        assert terminated == "1", terminated
    return _producer_killed(bed, "producer-terminated", inject)


def pg_dump_sigkilled(bed: Bed) -> Outcome:
    """The pg_dump process itself SIGKILLed while it streams and the upload runs."""
    def inject(process: subprocess.Popen[str]) -> None:
        pids = _children(process.pid, "pg_dump")
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
    return _producer_killed(bed, "pg-dump-sigkilled", inject)


def run(bed: Bed, name: str) -> Outcome:
    """Run one scenario, then sweep the whole bucket (R3): an orphan manifest makes the outcome incorrect."""
    outcome = SCENARIOS[name](bed)
    outcome.sweep = storage_sweep.sweep_s3(bed.minio.client(), bed.bucket)
    if outcome.sweep.orphan_manifests:
        outcome.correct = False
        outcome.detail += f"; ORPHAN MANIFESTS {outcome.sweep.orphan_manifests}"
    outcome.detail += f"; sweep: {outcome.sweep.summary()}"
    return outcome


def forget(bed: Bed, outcome: Outcome) -> None:
    """Delete a scenario's backup folder once swept (a long bench keeps the bucket small)."""
    if not outcome.folder:
        return
    client = bed.minio.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bed.bucket, Prefix=f"{outcome.folder}/")
            .get("Contents", [])]
    if keys:
        client.delete_objects(Bucket=bed.bucket, Delete={"Objects": [{"Key": key} for key in keys]})


def _restore_under_fault(bed: Bed, fault: str, inject: Callable[[], None]) -> Outcome:
    target = f"{bed.source}_r{uuid.uuid4().hex[:6]}"
    bed.server.create_database(target)
    args = ["restore", "--from", bed.backup_uri, "--dbname", target, "--recreate", "--confirm-overwrite", target,
            *bed.s3()]
    try:
        process, path = _popen(bed, args)
        try:
            _wait(f"{fault} to be injectable", _session(bed, target, "pg_restore"), process)
            inject()
            restored = time.monotonic()
            first = finished(process, *process.communicate(timeout=600), path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if first.code == 0 and datasets.table_checksums(bed.server, target) != bed.checksums:
            return Outcome(fault, False, 0.0, 0, "exit 0 but the restored data differs from the source")
        if first.code not in (0, TRANSIENT):
            return Outcome(fault, False, 0.0, first.code, f"not transient: {first.result.get('message')}")
        final = first if first.code == 0 else _retry(lambda: run_dbops(args, bed.env(), bed.workdir))
        recover = time.monotonic() - restored
        if final.code != 0:
            return Outcome(fault, False, recover, first.code, f"retry failed: {final.result.get('message')}")
        same = datasets.table_checksums(bed.server, target) == bed.checksums
        return Outcome(fault, same, recover, first.code, "" if same else "restored data differs from the source")
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            bed.server.drop_database(target)


def minio_killed_mid_download(bed: Bed, down_seconds: float = 2.0) -> Outcome:
    """MinIO SIGKILLed while a restore streams the dump from it."""
    def inject() -> None:
        bed.minio.kill()
        time.sleep(down_seconds)
        bed.minio.start()
    return _restore_under_fault(bed, "minio-mid-download", inject)


def postgres_restarted_mid_restore(bed: Bed) -> Outcome:
    """PostgreSQL restarted while pg_restore loads the target."""
    return _restore_under_fault(bed, "postgres-mid-restore", bed.server.restart)


@contextlib.contextmanager
def small_filesystem(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (root only), unmounted afterwards."""
    mount = Path(tempfile.mkdtemp(prefix="dbops-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True,
                   capture_output=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            mount.rmdir()


def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    try:
        with small_filesystem("1m"):
            return True
    except (subprocess.CalledProcessError, OSError):
        return False


def disk_full_directory_storage(bed: Bed) -> Outcome:
    """Directory storage on a filesystem too small for the dump: a clear DiskFull error, nothing that looks
    like a backup, no partial file; after the volume grows, the same backup succeeds."""
    fault = "disk-full"
    name = f"full-{uuid.uuid4().hex[:6]}"
    with small_filesystem("2m") as mount:
        first = backup(bed, name, str(mount))
        folder = mount / "local" / bed.source / name
        leftovers = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
        if first.code != 2 or first.result.get("reason") != "DiskFull":
            return Outcome(fault, False, 0.0, first.code, f"expected DiskFull: {first.result.get('message')}")
        if leftovers:
            return Outcome(fault, False, 0.0, first.code, f"left behind: {leftovers}")
        subprocess.run(["mount", "-o", "remount,size=512m", str(mount)], check=True, capture_output=True)
        grown = time.monotonic()
        final = backup(bed, name, str(mount))
        recover = time.monotonic() - grown
        if final.code != 0:
            return Outcome(fault, False, recover, first.code, f"after growing: {final.result.get('message')}")
        verify = run_dbops(["verify", "--from", str(folder)], bed.env(), bed.workdir)
        return Outcome(fault, verify.code == 0, recover, first.code, f"verify exit {verify.code}")


SCENARIOS: dict[str, Callable[[Bed], Outcome]] = {
    "minio-mid-upload": minio_killed_mid_upload,
    "minio-mid-download": minio_killed_mid_download,
    "postgres-mid-dump": postgres_restarted_mid_dump,
    "postgres-mid-restore": postgres_restarted_mid_restore,
    "network-cut-mid-dump": network_cut_mid_dump,
    "producer-terminated": producer_terminated,
    "pg-dump-sigkilled": pg_dump_sigkilled,
    "disk-full": disk_full_directory_storage,
}
