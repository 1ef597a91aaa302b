"""P1–P5: backup, restore and verify of a generated database, side by side with plain pg_dump and the runbook.

    python bench/backup_bench.py [--major 15] [--size-mb 1000] [--small-mb 100]

Starts a test-bed PostgreSQL and MinIO, generates a database of about ``--size-mb`` (pgbench tables plus a
mixed table with jsonb, text and timestamps) and a small one of about ``--small-mb``, then runs each
pipeline once and prints the ratios against the targets in docs (targets.md), the last line being a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "testbed")]

from dbops_testbed.minio import MinioServer, running_minio  # noqa: E402
from dbops_testbed.postgres import PostgresServer, running_postgres  # noqa: E402

MIB = 1024 * 1024


@dataclass
class Measured:
    """Wall time and, for dbops runs, the runner's peak RSS and the most temp disk seen."""

    seconds: float
    peak_rss: int = 0
    temp_bytes: int = 0


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def run_measured(args: list[str], env: dict[str, str], *, shell: bool = False) -> Measured:
    """Run a command; poll its VmHWM (peak RSS) and the size of its private TMPDIR."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-tmp-"))
    env = {**env, "TMPDIR": str(tmp)}
    started = time.monotonic()
    process = subprocess.Popen(args if not shell else " ".join(args), env=env, shell=shell,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    temp = 0
    stderr_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    while process.poll() is None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        temp = max(temp, _dir_size(tmp))
        time.sleep(0.05)
    seconds = time.monotonic() - started
    reader.join()
    shutil.rmtree(tmp, ignore_errors=True)
    if process.returncode != 0:
        raise RuntimeError(f"{args[:4]} failed: {b''.join(stderr_chunks).decode(errors='replace')[-2000:]}")
    return Measured(seconds=seconds, peak_rss=peak, temp_bytes=temp)


def generate(server: PostgresServer, dbname: str, size_mb: int) -> int:
    """pgbench tables plus a mixed table, until the database is about ``size_mb``; returns its size."""
    server.create_database(dbname)
    scale = max(1, int(size_mb * 0.55 / 15))
    subprocess.run([str(server.bin / "pgbench"), "-i", "-q", "-s", str(scale), dbname],
                   env={**os.environ, **server.env()}, check=True, capture_output=True)
    size = int(server.psql("SELECT pg_database_size(current_database())", dbname))
    rows = max(10_000, int((size_mb * MIB - size) / 300))
    server.psql(
        "CREATE TABLE mixed AS SELECT g AS id, md5(g::text) AS h, "
        "jsonb_build_object('a', g, 'b', md5((g * 3)::text), 'tags', jsonb_build_array(g % 7, g % 11)) AS j, "
        "timestamptz '2026-01-01' + g * interval '1 second' AS ts, "
        "repeat(chr(65 + g % 26), 40 + g % 120) AS t "
        f"FROM generate_series(1, {rows}) g; ALTER TABLE mixed ADD PRIMARY KEY (id)",
        dbname,
    )
    server.psql("VACUUM ANALYZE", dbname)
    return int(server.psql("SELECT pg_database_size(current_database())", dbname))


def dbops(*args: str) -> list[str]:
    """The dbops command line."""
    return [sys.executable, "-m", "dbops.cli.main", *args]


@contextlib.contextmanager
def servers(major: int) -> Iterator[tuple[PostgresServer, MinioServer]]:
    """PostgreSQL and MinIO for the run."""
    with running_postgres(major) as server, running_minio() as minio:
        yield server, minio


def main() -> None:
    """Run the benchmarks once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--major", type=int, default=15)
    parser.add_argument("--size-mb", type=int, default=1000)
    parser.add_argument("--small-mb", type=int, default=100)
    options = parser.parse_args()

    with servers(options.major) as (server, minio):
        bucket = f"bench-{uuid.uuid4().hex[:6]}"
        minio.client().create_bucket(Bucket=bucket)
        work = Path(tempfile.mkdtemp(prefix="bench-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_", "DBOPS_"))}
        env.update(server.env())
        env.update(minio.env())
        env["DBOPS_PG_BIN_DIR"] = str(server.bin)
        pg_dump = str(server.bin / "pg_dump")
        s3 = ["--s3-endpoint", minio.endpoint, "--s3-force-path-style"]
        try:
            t0 = time.monotonic()
            big = generate(server, "big", options.size_mb)
            small = generate(server, "small", options.small_mb)
            print(f"generated big={big / MIB:.0f} MiB, small={small / MIB:.0f} MiB in {time.monotonic() - t0:.0f}s",
                  flush=True)

            raw = run_measured([pg_dump, "-Fc", "-Z0", "-d", "big", ">", "/dev/null"], env, shell=True)
            print(f"pg_dump -Fc -Z0 > /dev/null            {raw.seconds:7.1f}s", flush=True)
            to_s3 = run_measured(dbops("backup", "--dbname", "big", "--storage", f"s3://{bucket}/bench",
                                       "--name", "big", *s3), env)
            print(f"dbops backup → MinIO (zstd 1)           {to_s3.seconds:7.1f}s  runner peak RSS "
                  f"{to_s3.peak_rss / MIB:.0f} MiB, temp {to_s3.temp_bytes} B", flush=True)
            local_root = work / "store"
            to_dir = run_measured(dbops("backup", "--dbname", "big", "--storage", str(local_root), "--name", "big"),
                                  env)
            dump_size = (local_root / "local" / "big" / "big" / "dump.zst").stat().st_size
            print(f"dbops backup → directory (zstd 1)       {to_dir.seconds:7.1f}s  {dump_size / MIB:.0f} MiB",
                  flush=True)
            script = work / "runbook.sql"
            runbook = run_measured([pg_dump, "-d", "big", ">", str(script), "&&", "gzip", "-f", str(script)],
                                   env, shell=True)
            gz_size = Path(str(script) + ".gz").stat().st_size
            print(f"runbook pg_dump > file && gzip          {runbook.seconds:7.1f}s  {gz_size / MIB:.0f} MiB",
                  flush=True)
            small_run = run_measured(dbops("backup", "--dbname", "small", "--storage", f"s3://{bucket}/bench",
                                           "--name", "small", *s3), env)
            print(f"dbops backup small → MinIO              {small_run.seconds:7.1f}s  runner peak RSS "
                  f"{small_run.peak_rss / MIB:.0f} MiB, temp {small_run.temp_bytes} B", flush=True)
            folder = str(local_root / "local" / "big" / "big")
            verify = run_measured(dbops("verify", "--from", folder), env)
            print(f"dbops verify (checksum + full decode)   {verify.seconds:7.1f}s", flush=True)
            restores = {}
            for jobs in (1, 2):
                target = f"restored_j{jobs}"
                restores[jobs] = run_measured(dbops("restore", "--from", folder, "--dbname", target, "--create",
                                                    "--jobs", str(jobs)), env)
                print(f"dbops restore --jobs {jobs} (directory)     {restores[jobs].seconds:7.1f}s", flush=True)
                server.drop_database(target)
            from_s3 = run_measured(dbops("restore", "--from", f"s3://{bucket}/bench/local/big/big", "--dbname",
                                         "restored_s3", "--create", "--jobs", "2", *s3), env)
            print(f"dbops restore --jobs 2 (MinIO)          {from_s3.seconds:7.1f}s", flush=True)
            server.drop_database("restored_s3")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    figures = [
        ("P1 backup to MinIO / pg_dump -Fc -Z0 > /dev/null", to_s3.seconds / raw.seconds, "≤ 1.5"),
        ("P2 dbops default / runbook pg_dump | gzip, wall", to_dir.seconds / runbook.seconds, "≤ 0.35"),
        ("P2 dbops default / runbook pg_dump | gzip, size", dump_size / gz_size, "≤ 1.0"),
        (f"P3 runner peak RSS MiB, {options.small_mb} MB db", small_run.peak_rss / MIB, "≤ 150"),
        (f"P3 runner peak RSS MiB, {options.size_mb} MB db", to_s3.peak_rss / MIB, "≤ 150"),
        ("P3 temp disk bytes (both)", float(max(small_run.temp_bytes, to_s3.temp_bytes)), "0"),
        ("P4 restore jobs 2 / jobs 1", restores[2].seconds / restores[1].seconds, "≤ 0.85"),
        ("P4 restore jobs 2 from MinIO / from a directory", from_s3.seconds / restores[2].seconds, "≤ 1.3"),
        ("P5 verify / dbops backup", verify.seconds / to_dir.seconds, "≤ 0.5"),
    ]
    for label, value, target in figures:
        print(f"{label:55s} {value:8.2f}   target {target}")
    print("SUMMARY " + "; ".join(f"{label.split()[0]} {value:.2f}" for label, value, _ in figures))


if __name__ == "__main__":
    main()
