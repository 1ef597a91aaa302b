"""One run lock per database for command-mode migrations: check, command and verify of one run never interleave
with another run's Jobs; the second run waits with a visible reason and proceeds after."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
# Records when the command ran; slow enough that the other run's whole check → command → verify would fit inside.
LOGGED_COMMAND = (
    "import os, sys, time, psycopg\n"
    "url = os.environ['DATABASE_URL']\n"
    "with psycopg.connect(url, autocommit=True) as c:\n"
    "    c.execute('CREATE TABLE IF NOT EXISTS run_log (run text, event text, at timestamptz default clock_timestamp())')\n"
    "    c.execute(\"INSERT INTO run_log (run, event) VALUES (%s, 'start')\", (sys.argv[1],))\n"
    "time.sleep(float(sys.argv[2]))\n"
    "with psycopg.connect(url, autocommit=True) as c:\n"
    "    c.execute(\"INSERT INTO run_log (run, event) VALUES (%s, 'end')\", (sys.argv[1],))\n"
)


def spec(run: str, seconds: float) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
            "source": {"command": {"image": "registry.example/mentorhub:1.4", "command": [
                sys.executable, "-c", LOGGED_COMMAND, run, str(seconds)]}}}


def jobs_of(kube_client: Any, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    return {job["metadata"]["labels"]["dbops.io/role"]: job for job in harness.list_jobs(kube_client, namespace)
            if job["metadata"]["labels"].get("dbops.io/name") == name}


def lease(kube_client: Any, namespace: str) -> list[dict[str, Any]]:
    leases = client.CoordinationV1Api(kube_client).list_namespaced_lease(namespace).items
    return [item.to_dict() for item in leases if (item.metadata.labels or {}).get("dbops.io/role") == "run-lock"]


def test_two_overlapping_runs_on_one_database_take_turns(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, MIGRATION, "first", spec("first", 8))

    def first_holds_the_lock() -> list[dict[str, Any]] | None:
        held = lease(kube_client, namespace)
        return held if held and held[0]["spec"]["holder_identity"] == f"{MIGRATION}/first" else None

    harness.eventually(first_holds_the_lock, timeout=120, message="the first run to take the lock")
    harness.create_resource(kube_client, namespace, MIGRATION, "second", spec("second", 0))

    def second_waiting() -> dict[str, Any] | None:
        status = (harness.get_resource(kube_client, namespace, MIGRATION, "second") or {}).get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return status if ready.get("reason") == "WaitingForLock" else None

    waiting = harness.eventually(second_waiting, timeout=120, message="the second run to wait for the lock")
    assert waiting["phase"] == "Waiting" and f"{MIGRATION}/first" in waiting["message"], waiting
    first_phase = (harness.get_resource(kube_client, namespace, MIGRATION, "first") or {})["status"]["phase"]
    assert first_phase not in ("Succeeded", "Failed"), "the first run ended before the second had to wait"
    assert not jobs_of(kube_client, namespace, "second"), "the second run started a Job while the lock was held"

    terminal = {"Succeeded", "Failed", "RolledBack"}
    first = harness.wait_for_phase(kube_client, namespace, MIGRATION, "first", terminal)["status"]
    second = harness.wait_for_phase(kube_client, namespace, MIGRATION, "second", terminal)["status"]
    assert first["phase"] == "Succeeded" and second["phase"] == "Succeeded", (first, second)

    # Every Job of the second run was created after the first run's last Job (verify) finished.
    first_jobs, second_jobs = jobs_of(kube_client, namespace, "first"), jobs_of(kube_client, namespace, "second")
    assert sorted(first_jobs) == sorted(second_jobs) == ["check", "command", "verify"]
    first_done = first_jobs["verify"]["status"]["completionTime"]
    assert all(job["metadata"]["creationTimestamp"] >= first_done for job in second_jobs.values()), \
        (first_done, {role: job["metadata"]["creationTimestamp"] for role, job in second_jobs.items()})
    order = postgres.psql("SELECT string_agg(run || ':' || event, ',' ORDER BY at) FROM run_log", app_database)
    assert order == "first:start,first:end,second:start,second:end"
    events = [e for e in harness.list_events(kube_client, namespace)
              if e["involvedObject"]["name"] == "second" and e["reason"] == "WaitingForLock"]
    assert events and f"{MIGRATION}/first" in events[0]["message"]
    assert not lease(kube_client, namespace), "the lock was not released after the last run"


def test_a_lock_left_by_a_deleted_run_is_taken_over(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    harness.create_resource(kube_client, namespace, MIGRATION, "gone", spec("gone", 600))
    harness.eventually(lambda: lease(kube_client, namespace) or None, timeout=120, message="the lock to be taken")
    harness.delete_resource(kube_client, namespace, MIGRATION, "gone")
    harness.eventually(lambda: harness.get_resource(kube_client, namespace, MIGRATION, "gone") is None or None,
                       timeout=60, message="the holder to be deleted")
    assert lease(kube_client, namespace), "the Lease outlives its holder (no ownerReference)"
    harness.create_resource(kube_client, namespace, MIGRATION, "next", spec("next", 0))
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "next",
                                    {"Succeeded", "Failed", "RolledBack"})["status"]
    assert status["phase"] == "Succeeded", status
    assert not lease(kube_client, namespace)
