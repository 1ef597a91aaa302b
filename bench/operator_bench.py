"""P7/P8: 1,000 DatabaseBackup resources created at once on the test control plane, then an operator restart.

    python bench/operator_bench.py [--count 1000] [--workers 16]

Starts a test-bed control plane WITHOUT the simulated node (Job pods stay Pending: only the operator's work is
measured), installs the CRDs, starts `dbops operator` for one namespace and measures:

- P7: time from the first create until all Jobs exist; duplicate Jobs; operator RSS at idle and with the
  resources (target ≤ 120 s; 0; ≤ 1.5× and ≤ 256 MiB);
- P8: after SIGKILL and restart, time until every resource was re-listed and reconciled (its phase shows up in
  ``dbops_resources`` on /metrics), and Jobs created after the restart (target ≤ 60 s; 0 spurious Jobs).

The last line is the summary.
"""

from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "testbed"), str(ROOT / "operator")]

from dbops.kube import objects  # noqa: E402
from dbops.kube import session as kube_session  # noqa: E402
from dbops_testbed.controlplane import ControlPlane, running_control_plane  # noqa: E402
from dbops_testbed.ports import free_port  # noqa: E402

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_operator(plane: ControlPlane, namespace: str, metrics_port: int, log: Path, workers: int,
                   recheck: str, trace_dir: Path | None = None) -> subprocess.Popen[bytes]:
    """`dbops operator` as a subprocess (under tracemalloc, see traced_operator.py, with a trace_dir)."""
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "bench")])}
    module = "dbops.cli.main"
    if trace_dir is not None:
        env["DBOPS_TRACEMALLOC_DIR"] = str(trace_dir)
        module = "traced_operator"
    handle = log.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", module, "operator", "--namespace", namespace, "--image", "dbops:bench",
             "--metrics-port", str(metrics_port), "--health-port", "0", "--workers", str(workers),
             "--recheck-seconds", recheck],
            stdout=handle, stderr=subprocess.STDOUT, env=env)
    finally:
        handle.close()


def metric_total(port: int, name: str, labels: str) -> float:
    """Sum of a metric's samples whose labels contain ``labels``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return -1.0
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def backup_jobs(namespace: str) -> list[dict[str, Any]]:
    """The operator's Jobs in the namespace."""
    return objects.list_objects("Job", namespace, label_selector="app.kubernetes.io/managed-by=dbops")


def _holds(condition: Any) -> bool:
    try:
        return bool(condition())
    except kube_session.ApiUnavailableError:  # a loaded machine: the API server may time out; ask again
        return False


def wait(condition: Any, timeout: float, interval: float = 0.5) -> float:
    """Seconds until condition() holds (raises after timeout)."""
    started = time.monotonic()
    while not _holds(condition):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not done after {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - started


def snapshot(operator: subprocess.Popen[bytes], trace_dir: Path | None, number: int) -> Path:
    """Ask the traced operator for heap snapshot ``number`` and wait for the file (a no-op untraced)."""
    path = (trace_dir or Path("/nonexistent")) / f"{number}.snapshot"
    if trace_dir is not None and not path.exists():
        operator.send_signal(signal.SIGUSR1)
        sizes: list[int] = []

        def written() -> bool:  # the pickle is written in pieces: wait until the size stops changing
            sizes.append(path.stat().st_size if path.exists() else 0)
            return len(sizes) > 3 and sizes[-1] > 0 and sizes[-1] == sizes[-2] == sizes[-3]

        wait(written, 600, interval=2.0)
    return path


def report_growth(before: Path, after: Path, top: int = 15) -> None:
    """Print the allocation sites (file:line and file) that grew most between two snapshots."""
    import tracemalloc

    old, new = tracemalloc.Snapshot.load(str(before)), tracemalloc.Snapshot.load(str(after))
    for key in ("filename", "lineno"):
        stats = new.compare_to(old, key)
        total = sum(stat.size_diff for stat in stats)
        print(f"tracemalloc growth by {key}: {total / MIB:.1f} MiB in all")
        for stat in stats[:top]:
            frame = stat.traceback[0]
            print(f"  {stat.size_diff / MIB:8.2f} MiB {stat.count_diff:+8d} blocks  {frame.filename}:{frame.lineno}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16, help="operator handler threads")
    parser.add_argument("--recheck-seconds", default="60", help="operator --recheck-seconds (0: no timers)")
    parser.add_argument("--trace", action="store_true",
                        help="run the operator under tracemalloc and print where the memory grew (RSS is inflated)")
    args = parser.parse_args()
    trace_dir = Path(tempfile.mkdtemp(prefix="dbops-bench-trace-")) if args.trace else None
    log = Path(tempfile.mkstemp(prefix="dbops-bench-operator-", suffix=".log")[1])
    with running_control_plane() as plane:
        plane.kubectl("apply", "--server-side", *[f"--filename={p}" for p in sorted((ROOT / "crds").glob("*.yaml"))])
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        kube_session.configure(str(plane.kubeconfig))
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        plane.kubectl("create", "namespace", namespace)
        for name, data in (("db", {"uri": "postgresql://bench@db.invalid/app"}),
                           ("s3", {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})):
            encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            objects.create_or_adopt({"apiVersion": "v1", "kind": "Secret",
                                     "metadata": {"name": name, "namespace": namespace}, "data": encoded})
        port = free_port()
        operator = start_operator(plane, namespace, port, log, args.workers, args.recheck_seconds, trace_dir)
        try:
            wait(lambda: metric_total(port, "controller_runtime_reconcile_total", "") >= 0, 120)
            time.sleep(10)
            idle = rss_bytes(operator.pid)
            snapshot(operator, trace_dir, 1)
            spec = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                    "storage": {"s3": {"bucket": "bench", "endpoint": "http://s3.invalid",
                                       "credentialsSecretRef": {"name": "s3"}}}}

            def create(index: int) -> None:
                objects.create_or_adopt({"apiVersion": "dbops.io/v1alpha1", "kind": "DatabaseBackup",
                                         "metadata": {"name": f"b-{index:04d}", "namespace": namespace},
                                         "spec": spec})

            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                list(pool.map(create, range(args.count)))
            created = time.monotonic() - started
            wait(lambda: len(backup_jobs(namespace)) >= args.count, 600, interval=1.0)
            all_jobs = time.monotonic() - started
            time.sleep(15)
            loaded = rss_bytes(operator.pid)
            if trace_dir is not None:
                report_growth(snapshot(operator, trace_dir, 1), snapshot(operator, trace_dir, 2))
            jobs = backup_jobs(namespace)
            per_owner = collections.Counter(j["metadata"]["labels"]["dbops.io/name"] for j in jobs)
            duplicates = sum(count - 1 for count in per_owner.values())
            print(f"P7 created {args.count} resources in {created:.1f}s; all {len(jobs)} Jobs exist after "
                  f"{all_jobs:.1f}s (target ≤ 120 s); duplicate Jobs: {duplicates}")
            print(f"P7 operator RSS idle {idle / MIB:.1f} MiB, with {args.count} resources {loaded / MIB:.1f} MiB: "
                  f"{loaded / idle:.2f}× (target ≤ 1.5× and ≤ 256 MiB)")

            operator.send_signal(signal.SIGKILL)
            operator.wait(30)
            restarted = time.monotonic()
            operator = start_operator(plane, namespace, port, log, args.workers, args.recheck_seconds)
            relisted = wait(lambda: metric_total(port, "dbops_resources", 'kind="DatabaseBackup"') >= args.count,
                            600, interval=1.0)
            time.sleep(5)
            spurious = metric_total(port, "dbops_jobs_created_total", "")
            after = len(backup_jobs(namespace))
            print(f"P8 restart with {args.count} resources: all re-listed and reconciled after {relisted:.1f}s "
                  f"(target ≤ 60 s); Jobs created after the restart: {spurious:.0f}; Jobs {after} (before {len(jobs)})")
            print(f"SUMMARY P7 {all_jobs:.1f}s / 120 s, duplicates {duplicates}, RSS {loaded / idle:.2f}× "
                  f"({loaded / MIB:.0f} MiB); P8 {relisted:.1f}s / 60 s, spurious Jobs {spurious:.0f} "
                  f"(since restart {time.monotonic() - restarted:.0f}s)")
        finally:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
            if os.environ.get("DBOPS_BENCH_KEEP_LOG") != "1":
                log.unlink(missing_ok=True)
            else:
                print(f"operator log: {log}")



if __name__ == "__main__":
    main()
