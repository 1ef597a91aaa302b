"""The operator demo: the local cluster, dbops installed from the Helm chart, MentorHub's examples at work."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from dbops_testbed import incluster, mentorhub
from dbops_testbed.controlplane import ControlPlane, running_control_plane
from dbops_testbed.demo_outcome import DemoFailure, Timeline, expected_phases, failures, summary_table
from dbops_testbed.executor import ProcessNodeExecutor
from dbops_testbed.minio import MinioServer, running_minio
from dbops_testbed.postgres import PostgresServer, running_postgres

NAMESPACE = "mentorhub"
# Test-only: break one example so the demo must fail (tests/integration/test_demo_exit_code.py).
BREAK_ENV = "DBOPS_DEMO_BREAK"
MISSING_BUCKET = "missing-bucket"


class Progress:
    """A live table of the namespace's dbops resources: redrawn in place on a terminal, changes only otherwise."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.tty = sys.stdout.isatty()
        self.drawn = 0
        self.last: dict[str, str] = {}

    def refresh(self) -> list[dict[str, Any]]:
        """Redraw from one listing of the namespace (one kubectl a poll: the machine may be small) and return it."""
        items = incluster.resources(self.plane, NAMESPACE)
        rows = incluster.table_rows(items)
        if self.tty:
            width = shutil.get_terminal_size((140, 40)).columns
            lines = incluster.render_table(rows, width)
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J" if self.drawn else "")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            self.drawn = len(lines)
            return items
        for name, kind, phase, age, message in rows:
            if self.last.get(f"{kind}/{name}") != phase:
                self.last[f"{kind}/{name}"] = phase
                print(f"  {age:>6}  {kind:<22} {name:<34} {phase:<16} {message[:90]}", flush=True)
        return items

    def note(self, text: str) -> None:
        """A line above the table (the table is redrawn below it)."""
        if self.tty and self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        print(text, flush=True)
        self.refresh()

    def until(self, kind: str, name: str, phases: set[str], timeout: float = 300) -> dict[str, Any]:
        """Refresh the table until the resource reaches one of `phases`; DemoFailure when it ends otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            body = _find(self.refresh(), kind, name)
            phase = (body.get("status") or {}).get("phase")
            if phase in phases and (phase not in incluster.FINAL or phase in expected_phases(kind, name)):
                return body
            if phase in incluster.FINAL:
                raise DemoFailure(f"{kind}/{name} ended {phase}")
            if time.monotonic() > deadline:
                raise DemoFailure(f"{kind}/{name} did not reach {' or '.join(sorted(phases))} in {timeout:.0f}s "
                                  f"(phase {phase or 'Pending'})")
            time.sleep(0.5)


def _find(items: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next((i for i in items if i["kind"] == kind and i["metadata"]["name"] == name), {})


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM and SIGHUP (terminal closed) tear down like Ctrl-C: KeyboardInterrupt unwinds every context."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


Enter = Callable[[contextlib.AbstractContextManager[Any]], Any]


def _start_together(stack: contextlib.ExitStack, *starts: Callable[[Enter], Any]) -> list[Any]:
    """Run independent start-ups at once (the cluster, PostgreSQL, MinIO); whatever started, even when another
    failed or Ctrl-C came, is on `stack` before this returns or raises, so it is stopped and removed."""
    lock = threading.Lock()
    # The pool's threads live until the stack closes: the test bed's servers die with the thread that started
    # them (PR_SET_PDEATHSIG), so they must not exit before the servers are stopped.
    pool = stack.enter_context(ThreadPoolExecutor(len(starts)))

    def start(function: Callable[[Enter], Any]) -> Any:
        own = contextlib.ExitStack()
        with lock:
            stack.callback(own.close)  # closed by the main thread's unwinding, after this start-up ended
        return function(own.enter_context)

    futures = [pool.submit(start, function) for function in starts]
    try:
        return [future.result() for future in futures]
    finally:
        for future in futures:  # wait for each (a Ctrl-C above must not unwind while a server still starts)
            with contextlib.suppress(BaseException):
                future.exception()


def _step(text: str, timeline: Timeline) -> None:
    print(f"[{timeline.elapsed():5.1f}s] {text}", flush=True)


def _summary(plane: ControlPlane, postgres: PostgresServer, database: str) -> None:
    backup = incluster.resource(plane, NAMESPACE, "DatabaseBackup", "mentorhub-before-release")["status"]
    artifact = backup["artifact"]
    restore = incluster.resource(plane, NAMESPACE, "DatabaseRestore", "mentorhub-restore-bookings")["status"]
    history = postgres.psql("SELECT version || '  ' || name || '  ' || kind || '  ' || "
                            "CASE WHEN success THEN 'ok' ELSE 'failed' END FROM public.dbops_migrations "
                            "ORDER BY applied_at, version", database)
    print("\nSummary")
    print(f"  backup      {artifact['uri']}")
    print(f"              {artifact['sizeBytes']} bytes, sha256 {artifact['sha256']}, "
          f"verified: decoded={backup.get('verification', {}).get('decoded')}")
    verification = restore.get("verification") or {}
    print(f"  restore     {restore.get('tablesRestored')} table(s) restored, verification passed: "
          f"{verification.get('passed')} ({verification.get('tablesCompared', 0)} compared)")
    for name in ("mentorhub-schema", "mentorhub-schema-next"):
        status = incluster.resource(plane, NAMESPACE, "DatabaseMigration", name)["status"]
        message = str(status.get("message", ""))
        print(f"  migration   {name}: {status['phase']} - {message[:150]}{'…' if len(message) > 150 else ''}")
    print("  history     (public.dbops_migrations)")
    for line in history.strip().splitlines():
        print(f"              {line}")


def _break(documents: list[dict[str, Any]]) -> None:
    """Test-only faults (BREAK_ENV): the first backup points at a bucket that does not exist."""
    if os.environ.get(BREAK_ENV) == MISSING_BUCKET:
        backup = next(d for d in documents if d["kind"] == "DatabaseBackup")
        backup["spec"]["storage"]["s3"]["bucket"] = "mentorhub-backups-missing"


def _run_schedule_now(plane: ControlPlane, progress: Progress) -> None:
    """Run the nightly schedule's CronJob now, as `kubectl create job --from=cronjob/…` does (its backup works
    beside the others; the demo does not wait for 02:00)."""
    cron_job = incluster.eventually(lambda: (incluster.resource(
        plane, NAMESPACE, "DatabaseBackupSchedule", "mentorhub-nightly").get("status") or {}).get("cronJobName"),
        timeout=120, message="the schedule's CronJob", interval=0.5)
    progress.note(f"the nightly schedule, run now: kubectl create job --from=cronjob/{cron_job} "
                  "mentorhub-nightly-now")
    plane.kubectl("-n", NAMESPACE, "create", "job", f"--from=cronjob/{cron_job}", "mentorhub-nightly-now")


def _scheduled_backup(plane: ControlPlane, progress: Progress, timeout: float = 240) -> None:
    """Wait until the schedule reports a successful backup (DemoFailure when its backup fails)."""
    deadline = time.monotonic() + timeout
    while True:
        items = progress.refresh()
        if (_find(items, "DatabaseBackupSchedule", "mentorhub-nightly").get("status") or {}).get("lastSuccessfulBackup"):
            return
        scheduled = [b for b in items
                     if b["kind"] == "DatabaseBackup" and b["metadata"]["name"].startswith("mentorhub-nightly-")]
        if any((b.get("status") or {}).get("phase") in incluster.FINAL for b in scheduled):
            raise DemoFailure("the scheduled backup ended " + ", ".join(
                f"{b['metadata']['name']} {(b.get('status') or {}).get('phase')}" for b in scheduled))
        if time.monotonic() > deadline:
            raise DemoFailure(f"no successful scheduled backup within {timeout:.0f}s")
        time.sleep(0.5)


def _settle(plane: ControlPlane, progress: Progress, timeout: float = 120) -> list[dict[str, Any]]:
    """Every resource once none is still working (child backups and restores included)."""
    deadline = time.monotonic() + timeout
    while True:
        items = progress.refresh()
        working = [i for i in items if (i.get("status") or {}).get("phase") not in {*incluster.FINAL, "Active"}]
        if not working or time.monotonic() > deadline:
            return items
        time.sleep(0.5)


def _verdict(plane: ControlPlane, progress: Progress | None, problem: str | None) -> int:
    """The closing table of every resource and the exit code: 1 naming each resource that did not succeed."""
    try:
        items = _settle(plane, progress) if progress and problem is None else incluster.resources(plane, NAMESPACE)
    except RuntimeError as error:  # the cluster itself is gone: say so, without a traceback
        print(f"\ndemo FAILED: {problem or 'the cluster stopped answering'}\n  cannot list the resources: "
              f"{str(error).splitlines()[-1]}", file=sys.stderr)
        return 1
    print("\nResources (phase, time from creation to completion)")
    for line in summary_table(items):
        print(f"  {line}")
    failed = failures(items)
    if problem is None and not failed:
        return 0
    print(f"\ndemo FAILED{': ' + problem if problem else ''}", file=sys.stderr)
    for line in failed:
        print(f"  {line}", file=sys.stderr)
    return 1


def _examples(plane: ControlPlane, postgres: PostgresServer, database: str, minio: Any, bucket: str,
              timeline: Timeline) -> Progress:
    """Apply the examples and follow each to its end (DemoFailure when one ends otherwise)."""
    plane.kubectl("create", "namespace", NAMESPACE)
    documents = mentorhub.local_examples(postgres, database, minio, bucket)
    for document in documents:  # the example's nightly schedule; the demo runs its CronJob at once (below)
        if document["kind"] == "DatabaseBackupSchedule":
            document["spec"]["schedule"] = "0 2 * * *"
    _break(documents)
    pick = lambda *kinds: [d for d in documents if d["kind"] in kinds]  # noqa: E731
    _step("kubectl apply -f manifests/examples/ (pointed at the local PostgreSQL and MinIO)", timeline)
    incluster.apply(plane, NAMESPACE, pick("Secret", "ConfigMap", "DatabaseBackup", "DatabaseBackupSchedule",
                                           "DatabaseMigration"))
    progress = Progress(plane)
    _run_schedule_now(plane, progress)
    # the plan is ready before the backup is: approve it at once (the migration takes its own backup first)
    plan = progress.until("DatabaseMigration", "mentorhub-schema", {"AwaitingApproval", *incluster.FINAL})
    timeline.mark("DatabaseMigration/mentorhub-schema planned (AwaitingApproval)")
    if plan["status"]["phase"] == "AwaitingApproval":
        plan_hash = plan["status"]["plan"]["hash"]
        progress.note(f"approving plan {plan_hash[:12]}… (pending: {', '.join(plan['status']['plan']['pending'])})")
        plane.kubectl("-n", NAMESPACE, "patch", "dbm", "mentorhub-schema", "--type=merge", "-p", json.dumps(
            {"spec": {"approval": {"mode": "Manual", "approvedPlanHash": plan_hash}}}))
    progress.until("DatabaseBackup", "mentorhub-before-release", incluster.FINAL)
    timeline.mark("DatabaseBackup/mentorhub-before-release Succeeded (verified)")
    progress.until("DatabaseMigration", "mentorhub-schema", incluster.FINAL)
    timeline.mark("DatabaseMigration/mentorhub-schema approved, Succeeded (pre-migration backup)")
    progress.note("a migration that fails on production data (UNIQUE over duplicate bookings) ...")
    incluster.apply(plane, NAMESPACE, incluster.failing_migration(documents))
    progress.until("DatabaseMigration", "mentorhub-schema-next", incluster.FINAL)
    timeline.mark("DatabaseMigration/mentorhub-schema-next RolledBack (restore)")
    deleted = postgres.psql("WITH d AS (DELETE FROM mentorship_bookings WHERE status = 'pending' RETURNING 1) "
                            "SELECT count(*) FROM d", database).strip()
    progress.note(f"oops: {deleted} pending bookings deleted; restoring the table from the backup ...")
    incluster.apply(plane, NAMESPACE, pick("DatabaseRestore"))
    progress.until("DatabaseRestore", "mentorhub-restore-bookings", incluster.FINAL)
    timeline.mark("DatabaseRestore/mentorhub-restore-bookings Succeeded")
    _scheduled_backup(plane, progress)
    timeline.mark("DatabaseBackupSchedule/mentorhub-nightly: its run's backup Succeeded")
    return progress


def run(*, keep: bool, timings: Path | None = None) -> int:
    """The whole demo; returns the exit code (1 naming each resource that did not end as expected)."""
    timeline = Timeline()
    code = 1
    try:
        with _interruptible(), contextlib.ExitStack() as stack:
            _step("starting the local cluster (etcd, kube-apiserver, kube-controller-manager) ...", timeline)
            bucket = "mentorhub-backups"

            def cluster(enter: Enter) -> ControlPlane:
                plane: ControlPlane = enter(running_control_plane())
                enter(ProcessNodeExecutor(plane.api_client()))
                return plane

            def mentorhub_database(enter: Enter) -> tuple[PostgresServer, str]:
                server: PostgresServer = enter(running_postgres(18))
                return server, mentorhub.create_database(server, "mentorhub")

            def storage(enter: Enter) -> MinioServer:
                minio: MinioServer = enter(running_minio())
                minio.client().create_bucket(Bucket=bucket)
                return minio

            plane, (postgres, database), minio = _start_together(stack, cluster, mentorhub_database, storage)
            _step(f"cluster {plane.server}, node ready, PostgreSQL 18 on :{postgres.port} with MentorHub "
                  f"({postgres.psql('SELECT count(*) FROM mentorship_bookings', database).strip()} bookings), "
                  f"MinIO {minio.endpoint}", timeline)
            timeline.mark("cluster up (control plane, node, PostgreSQL 18 with MentorHub, MinIO)")
            _step("helm install dbops helm/dbops -n dbops-system --create-namespace --wait ...", timeline)
            progress: Progress | None = None
            problem: str | None = None
            try:
                incluster.helm_install(plane)
                timeline.mark("helm install --wait (operator Deployment available)")
                (pod,) = incluster.operator_pods(plane, "dbops-system")
                _step(f"operator pod {pod['metadata']['name']} Ready (ServiceAccount "
                      f"{pod['spec']['serviceAccountName']}, in-cluster config)", timeline)
                progress = _examples(plane, postgres, database, minio, bucket, timeline)
            except (DemoFailure, RuntimeError, TimeoutError) as error:
                problem = str(error)
            code = _verdict(plane, progress, problem)
            timeline.mark("every resource settled, verdict")
            timeline.reconciled = timeline.elapsed()
            if code == 0:
                _summary(plane, postgres, database)
            _step("demo finished" if code == 0 else "demo failed", timeline)
            if keep:
                print(f"\nThe cluster keeps running. In another shell:\n  export KUBECONFIG={plane.kubeconfig}\n"
                      f"  kubectl get dbops -n {NAMESPACE}\nPress Ctrl-C to tear everything down.", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
            print("tearing down ...", flush=True)
        timeline.mark("teardown")
        _step("everything the demo started is stopped and removed", timeline)
    finally:
        timeline.write(timings, code=code, total=timeline.elapsed())
    return code
