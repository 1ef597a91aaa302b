"""R21: faults injected mid-work, repeated; per fault: runs, correct outcomes, time to recover.

    python bench/faults_bench.py [--runs 5] [--api-runs 20] [--only minio-mid-upload,...] [--skip-api] [--rows N]

Starts its own PostgreSQL 18 and MinIO and repeats each runner-level fault of tests/integration/faults.py
(MinIO killed mid-upload and mid-download, PostgreSQL restarted mid-dump and mid-restore, the network cut
mid-dump, a full disk under directory storage, and R2: pg_dump's backend terminated and pg_dump SIGKILLed
mid-stream), sweeping the whole bucket after each run (R3: orphan manifests, leftovers); then runs tests/integration/test_fault_apiserver.py with
``DBOPS_FAULT_REPEAT=--api-runs`` (etcd and the API server killed and restarted mid-reconcile, with the
operator running). "Recover" is from the end of the fault to a verified result, Job-style retries included.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "testbed")]

from tests.integration import faults  # noqa: E402

from dbops_testbed.minio import running_minio  # noqa: E402
from dbops_testbed.postgres import running_postgres  # noqa: E402


def row(fault: str, outcomes: list[faults.Outcome]) -> str:
    correct = sum(1 for outcome in outcomes if outcome.correct)
    times = [outcome.recover_seconds for outcome in outcomes if outcome.correct] or [0.0]
    firsts = sorted({str(outcome.first_code) for outcome in outcomes})
    sweeps = [outcome.sweep for outcome in outcomes if outcome.sweep is not None]
    orphans = sum(len(sweep.orphan_manifests) for sweep in sweeps)
    leftovers = max((len(sweep.orphan_objects) + len(sweep.incomplete_uploads) for sweep in sweeps), default=0)
    return (f"| {fault} | {len(outcomes)} | {correct} | {statistics.median(times):.1f} s | {max(times):.1f} s "
            f"| {', '.join(firsts)} | {orphans} | {leftovers} |")


def api_server_row(runs: int) -> str:
    env = {**os.environ, "DBOPS_FAULT_REPEAT": str(runs)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                             "tests/integration/test_fault_apiserver.py"], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=False)
    match = re.search(r"FAULT api-server\+etcd runs=(\d+) correct=(\d+) recover_median=([\d.]+)s "
                      r"recover_max=([\d.]+)s", result.stdout)
    if not match:
        tail = (result.stdout + result.stderr)[-3000:]
        return f"| api-server+etcd | {runs} | ? | ? | ? | pytest exit {result.returncode}: {tail!r} | - | - |"
    total, correct, median, longest = match.groups()
    print(f"api-server+etcd: {time.monotonic() - started:.0f}s for {total} runs", flush=True)
    return f"| api-server+etcd restarted mid-reconcile | {total} | {correct} | {median} s | {longest} s | - | - | - |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each runner-level fault")
    parser.add_argument("--api-runs", type=int, default=20, help="API server + etcd restarts")
    parser.add_argument("--only", default="", help="comma-separated fault names")
    parser.add_argument("--skip-api", action="store_true")
    parser.add_argument("--rows", type=int, default=1_500_000, help="rows of the source's big table")
    args = parser.parse_args()
    names = [name for name in faults.SCENARIOS if not args.only or name in args.only.split(",")]
    if "disk-full" in names and not faults.can_mount():
        print("disk-full skipped: mounting a tmpfs needs root with CAP_SYS_ADMIN", flush=True)
        names.remove("disk-full")
    rows = []
    load = os.getloadavg()[0]
    with running_postgres(18) as server, running_minio() as minio:
        bed = faults.prepare(server, minio, Path(tempfile.mkdtemp(prefix="faults-bench-")), rows=args.rows)
        for name in names:
            outcomes = []
            for run in range(args.runs):
                outcome = faults.run(bed, name)
                print(f"{name} #{run + 1}: correct={outcome.correct} first exit {outcome.first_code} "
                      f"recovered {outcome.recover_seconds:.1f}s {outcome.detail}", flush=True)
                outcomes.append(outcome)
                faults.forget(bed, outcome)
            rows.append(row(name, outcomes))
            print(rows[-1], flush=True)
    if not args.skip_api:
        rows.append(api_server_row(args.api_runs))
    print(f"\n{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC; load average at start {load:.1f}, at end "
          f"{os.getloadavg()[0]:.1f}")
    print("| fault | runs | correct | recover median | recover max | first exit codes | orphan manifests "
          "| max leftovers in the bucket |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
