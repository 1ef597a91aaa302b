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
import json
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


def _status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, timeout: float = 300.0, window: float = 10.0, busy: float = 0.1) -> float:
    """Seconds until the process used less than ``busy`` of a core over ``window`` seconds (at most timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = cpu_seconds(pid)
        time.sleep(window)
        if (cpu_seconds(pid) - before) / window < busy:
            break
    return time.monotonic() - started


def rss_bytes(pid: int) -> int:
    """Resident set size of a process."""
    return _status_bytes(pid, "VmRSS")


def peak_bytes(pid: int) -> int:
    """Peak resident set size of a process."""
    return _status_bytes(pid, "VmHWM")


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


def api_requests(plane: ControlPlane) -> collections.Counter[str]:
    """The API server's request counts so far (``apiserver_request_total``) by verb and resource: a figure the
    machine's load does not move (the operator's requests, and the few of the bench and the controller manager)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in plane.kubectl("get", "--raw", "/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:line.rindex("}")].split(",") if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        resource = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
        counts[f"{labels.get('verb', '')} {resource}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def print_requests(label: str, before: collections.Counter[str], after: collections.Counter[str], per: int) -> None:
    """The API requests made between two ``api_requests`` readings, per resource."""
    diff = {key: after[key] - before[key] for key in after if after[key] > before[key]}
    total = sum(diff.values())
    print(f"{label}: {total} API requests, {total / per:.2f} per resource: " + ", ".join(
        f"{key} {count} ({count / per:.2f})" for key, count in sorted(diff.items(), key=lambda kv: -kv[1])[:10]))


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
    stats = new.compare_to(old, "traceback")
    if stats and len(stats[0].traceback) > 1:
        print("tracemalloc growth by traceback (innermost frame last):")
        for stat in stats[:top]:
            print(f"  {stat.size_diff / MIB:8.2f} MiB {stat.count_diff:+8d} blocks")
            for frame in stat.traceback:
                print(f"      {frame.filename}:{frame.lineno}")


def census(trace_dir: Path | None, number: int) -> dict[str, Any]:
    """The census written with snapshot ``number`` (empty when not traced)."""
    path = (trace_dir or Path("/nonexistent")) / f"{number}.census.json"
    return json.loads(path.read_text()) if path.exists() else {}


def print_census(label: str, data: dict[str, Any]) -> None:
    """One line per owner of memory from a census."""
    if not data:
        return
    kopf = data.get("kopf_memories") or [{}]
    print(f"census {label}: RSS {data.get('VmRSS')}, gc objects {data['gc_objects']}, "
          f"tracemalloc {data.get('tracemalloc_mib') or 0:.1f} MiB, periodic collections {data.get('collections')} "
          f"({data.get('gc_frozen')} objects frozen)")
    print(f"  glibc malloc {json.dumps(data.get('malloc'))}; pymalloc {json.dumps(data.get('pymalloc'))}")
    print(f"  kopf memories {[k.get('memories') for k in kopf]}, live bodies {[k.get('live_bodies') for k in kopf]} "
          f"({sum(k.get('live_bodies_mib', 0) for k in kopf):.1f} MiB), running daemons/timers "
          f"{sum(k.get('running_daemons', 0) for k in kopf)}; asyncio tasks {data.get('asyncio_tasks')}, "
          f"threads {data.get('threads')}; aiohttp {data.get('aiohttp_connectors')}, SSL protocols "
          f"{data.get('ssl_protocols')}; dbops {data.get('dbops')}")
    print(f"  tasks by coroutine {data.get('asyncio_tasks_by_coro')}")
    print(f"  live Kubernetes objects {json.dumps(data.get('bodies'))}")
    print(f"  gc by type {dict(list(data['by_type'].items())[:15])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--steps", default="",
                        help="comma-separated resource counts to measure RSS at on the way (e.g. 1000,2000,5000)")
    parser.add_argument("--workers", type=int, default=16, help="operator handler threads")
    parser.add_argument("--recheck-seconds", default="60", help="operator --recheck-seconds (0: no timers)")
    parser.add_argument("--malloc-arena-max", default="2",
                        help="MALLOC_ARENA_MAX for the operator, as the image and chart set it ('' leaves glibc's "
                             "default of 8 per core)")
    parser.add_argument("--pythonmalloc", default="",
                        help="PYTHONMALLOC for the operator ('malloc': glibc for every object, no pymalloc arenas)")
    parser.add_argument("--trace", action="store_true",
                        help="run the operator under tracemalloc and print where the memory grew (RSS is inflated)")
    parser.add_argument("--census", action="store_true",
                        help="count what is alive (Kopf memories, bodies, tasks, connections, gc types) at each "
                             "step, without tracemalloc")
    parser.add_argument("--no-restart", action="store_true", help="skip P8 (the restart)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the control plane and the operator
    steps = sorted({int(s) for s in args.steps.split(",") if s} | {args.count})
    trace_dir = Path(tempfile.mkdtemp(prefix="dbops-bench-trace-")) if args.trace or args.census else None
    if args.census and not args.trace:
        os.environ["DBOPS_TRACEMALLOC_FRAMES"] = "0"
    if args.malloc_arena_max:
        os.environ["MALLOC_ARENA_MAX"] = args.malloc_arena_max
    else:
        os.environ.pop("MALLOC_ARENA_MAX", None)
    if args.pythonmalloc:
        os.environ["PYTHONMALLOC"] = args.pythonmalloc
    log = Path(tempfile.mkstemp(prefix="dbops-bench-operator-", suffix=".log")[1])
    print(f"load average {os.getloadavg()[0]:.1f}; MALLOC_ARENA_MAX={args.malloc_arena_max or 'unset'}; "
          f"PYTHONMALLOC={args.pythonmalloc or 'unset'}; steps {steps}")
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
            wait(lambda: metric_total(port, "controller_runtime_reconcile_total", "") >= 0, 600 if args.trace else 120)
            time.sleep(10)
            idle = rss_bytes(operator.pid)
            snapshot(operator, trace_dir, 1)
            print_census("idle", census(trace_dir, 1))
            spec = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                    "storage": {"s3": {"bucket": "bench", "endpoint": "http://s3.invalid",
                                       "credentialsSecretRef": {"name": "s3"}}}}

            def create(index: int) -> None:
                objects.create_or_adopt({"apiVersion": "dbops.io/v1alpha1", "kind": "DatabaseBackup",
                                         "metadata": {"name": f"b-{index:05d}", "namespace": namespace},
                                         "spec": spec})

            curve: list[tuple[int, float, int, int]] = []
            done = 0
            for number, step in enumerate(steps, start=2):
                requests_before = api_requests(plane)
                started = time.monotonic()
                with concurrent.futures.ThreadPoolExecutor(16) as pool:
                    list(pool.map(create, range(done, step)))
                created = time.monotonic() - started
                wait(lambda: len(backup_jobs(namespace)) >= step, 600 + step * 0.5, interval=2.0)
                all_jobs = time.monotonic() - started
                print_requests(f"step {step} until all Jobs", requests_before, api_requests(plane), step - done)
                time.sleep(15)
                busy = rss_bytes(operator.pid)
                # Then until the operator is quiet (its event backlog handled): a loaded machine leaves hundreds
                # of watch events queued 15 s after the last Job, which is a backlog, not what 1,000 resources cost.
                wait(lambda: metric_total(port, "dbops_resources", 'kind="DatabaseBackup"') >= step, 600, 2.0)
                quiet = settle(operator.pid)
                loaded = rss_bytes(operator.pid)
                hwm = peak_bytes(operator.pid)
                snapshot(operator, trace_dir, number)
                print(f"step {step}: {step - done} created in {created:.1f}s, all Jobs after {all_jobs:.1f}s; "
                      f"RSS 15 s later {busy / MIB:.1f} MiB ({busy / idle:.2f}×); quiet after {quiet:.0f} s more: "
                      f"RSS {loaded / MIB:.1f} MiB ({loaded / idle:.2f}× idle), peak {hwm / MIB:.1f} MiB; "
                      f"load {os.getloadavg()[0]:.1f}")
                print_census(str(step), census(trace_dir, number))
                curve.append((step, all_jobs, loaded, hwm))
                done = step
            if args.trace:
                report_growth(trace_dir / "1.snapshot", trace_dir / f"{len(steps) + 1}.snapshot")
            all_jobs, loaded = curve[-1][1], curve[-1][2]
            jobs = backup_jobs(namespace)
            per_owner = collections.Counter(j["metadata"]["labels"]["dbops.io/name"] for j in jobs)
            duplicates = sum(count - 1 for count in per_owner.values())
            print(f"P7 operator RSS idle {idle / MIB:.1f} MiB; " + "; ".join(
                f"{step}: {rss / MIB:.1f} MiB {rss / idle:.2f}× (peak {hwm / MIB:.0f})" for step, _, rss, hwm in curve))
            print(f"P7 {args.count} resources: all {len(jobs)} Jobs exist after {all_jobs:.1f}s of the last step "
                  f"(target ≤ 120 s at 1,000, ≤ 300 s at 5,000); duplicate Jobs: {duplicates}")
            summary = (f"SUMMARY P7 {all_jobs:.1f}s, duplicates {duplicates}, RSS {loaded / idle:.2f}× "
                       f"({loaded / MIB:.0f} MiB)")
            if args.no_restart:
                print(summary)
                return
            operator.send_signal(signal.SIGKILL)
            operator.wait(30)
            requests_before = api_requests(plane)
            restarted = time.monotonic()
            operator = start_operator(plane, namespace, port, log, args.workers, args.recheck_seconds)
            relisted = wait(lambda: metric_total(port, "dbops_resources", 'kind="DatabaseBackup"') >= args.count,
                            600, interval=1.0)
            print_requests("P8 until all re-listed", requests_before, api_requests(plane), args.count)
            time.sleep(5)
            spurious = metric_total(port, "dbops_jobs_created_total", "")
            after = len(backup_jobs(namespace))
            print(f"P8 restart with {args.count} resources: all re-listed and reconciled after {relisted:.1f}s "
                  f"(target ≤ 60 s); Jobs created after the restart: {spurious:.0f}; Jobs {after} (before {len(jobs)})")
            print(f"{summary}; P8 {relisted:.1f}s / 60 s, spurious Jobs {spurious:.0f} "
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
