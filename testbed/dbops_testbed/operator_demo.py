"""The operator demo: the local cluster, dbops installed from the Helm chart, MentorHub's examples at work."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

from dbops_testbed import incluster, mentorhub
from dbops_testbed.controlplane import ControlPlane, running_control_plane
from dbops_testbed.executor import ProcessNodeExecutor
from dbops_testbed.minio import running_minio
from dbops_testbed.postgres import PostgresServer, running_postgres

NAMESPACE = "mentorhub"


class Progress:
    """A live table of the namespace's dbops resources: redrawn in place on a terminal, changes only otherwise."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.tty = sys.stdout.isatty()
        self.drawn = 0
        self.last: dict[str, str] = {}

    def refresh(self) -> None:
        rows = incluster.table_rows(incluster.resources(self.plane, NAMESPACE))
        if self.tty:
            width = shutil.get_terminal_size((140, 40)).columns
            lines = incluster.render_table(rows, width)
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J" if self.drawn else "")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            self.drawn = len(lines)
            return
        for name, kind, phase, age, message in rows:
            if self.last.get(f"{kind}/{name}") != phase:
                self.last[f"{kind}/{name}"] = phase
                print(f"  {age:>6}  {kind:<22} {name:<34} {phase:<16} {message[:90]}", flush=True)

    def note(self, text: str) -> None:
        """A line above the table (the table is redrawn below it)."""
        if self.tty and self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0
        print(text, flush=True)
        self.refresh()

    def until(self, kind: str, name: str, phases: set[str], timeout: float = 300) -> dict[str, Any]:
        """Refresh the table until the resource reaches one of `phases`."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            body = incluster.resource(self.plane, NAMESPACE, kind, name)
            if (body.get("status") or {}).get("phase") in phases:
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind} {name} did not reach {sorted(phases)} in {timeout:.0f}s")
            time.sleep(1)


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


def _step(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)


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


def run(*, keep: bool) -> int:
    """The whole demo; returns the exit code."""
    started = time.monotonic()
    with _interruptible(), contextlib.ExitStack() as stack:
        _step("starting the local cluster (etcd, kube-apiserver, kube-controller-manager) ...", started)
        plane = stack.enter_context(running_control_plane())
        stack.enter_context(ProcessNodeExecutor(plane.api_client()))
        postgres = stack.enter_context(running_postgres(18))
        minio = stack.enter_context(running_minio())
        bucket = "mentorhub-backups"
        minio.client().create_bucket(Bucket=bucket)
        database = mentorhub.create_database(postgres, "mentorhub")
        _step(f"cluster {plane.server}, node ready, PostgreSQL 18 on :{postgres.port} with MentorHub "
              f"({postgres.psql('SELECT count(*) FROM mentorship_bookings', database).strip()} bookings), "
              f"MinIO {minio.endpoint}", started)
        _step("helm install dbops helm/dbops -n dbops-system --create-namespace --wait ...", started)
        incluster.helm_install(plane)
        (pod,) = incluster.operator_pods(plane, "dbops-system")
        _step(f"operator pod {pod['metadata']['name']} Ready (ServiceAccount {pod['spec']['serviceAccountName']}, "
              "in-cluster config)", started)
        plane.kubectl("create", "namespace", NAMESPACE)
        documents = mentorhub.local_examples(postgres, database, minio, bucket)
        pick = lambda *kinds: [d for d in documents if d["kind"] in kinds]  # noqa: E731
        _step("kubectl apply -f manifests/examples/ (pointed at the local PostgreSQL and MinIO)", started)
        incluster.apply(plane, NAMESPACE, pick("Secret", "ConfigMap", "DatabaseBackup", "DatabaseBackupSchedule",
                                               "DatabaseMigration"))
        progress = Progress(plane)
        progress.until("DatabaseBackup", "mentorhub-before-release", incluster.FINAL)
        plan = progress.until("DatabaseMigration", "mentorhub-schema", {"AwaitingApproval", *incluster.FINAL})
        if plan["status"]["phase"] == "AwaitingApproval":
            plan_hash = plan["status"]["plan"]["hash"]
            progress.note(f"approving plan {plan_hash[:12]}… (pending: {', '.join(plan['status']['plan']['pending'])})")
            plane.kubectl("-n", NAMESPACE, "patch", "dbm", "mentorhub-schema", "--type=merge", "-p", json.dumps(
                {"spec": {"approval": {"mode": "Manual", "approvedPlanHash": plan_hash}}}))
        progress.until("DatabaseMigration", "mentorhub-schema", incluster.FINAL)
        progress.note("a migration that fails on production data (UNIQUE over duplicate bookings) ...")
        incluster.apply(plane, NAMESPACE, incluster.failing_migration(documents))
        progress.until("DatabaseMigration", "mentorhub-schema-next", incluster.FINAL)
        deleted = postgres.psql("WITH d AS (DELETE FROM mentorship_bookings WHERE status = 'pending' RETURNING 1) "
                                "SELECT count(*) FROM d", database).strip()
        progress.note(f"oops: {deleted} pending bookings deleted; restoring the table from the backup ...")
        incluster.apply(plane, NAMESPACE, pick("DatabaseRestore"))
        progress.until("DatabaseRestore", "mentorhub-restore-bookings", incluster.FINAL)
        progress.note("waiting for the schedule's first tick (CronJob every minute) ...")
        incluster.eventually(lambda: progress.refresh() or (incluster.resource(
            plane, NAMESPACE, "DatabaseBackupSchedule", "mentorhub-nightly").get("status") or {}).get(
            "lastSuccessfulBackup"), timeout=180, message="a scheduled backup")
        progress.refresh()
        _summary(plane, postgres, database)
        _step("demo finished", started)
        if keep:
            print(f"\nThe cluster keeps running. In another shell:\n  export KUBECONFIG={plane.kubeconfig}\n"
                  f"  kubectl get dbops -n {NAMESPACE}\nPress Ctrl-C to tear everything down.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
        print("tearing down ...", flush=True)
    return 0
