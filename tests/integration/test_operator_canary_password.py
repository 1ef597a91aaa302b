"""R14: a canary password through every path (backup, restore, SQL and command migrations, a schedule; success and
failure): never in status, Events, the operator's log, runner pod logs, Job/CronJob/Pod specs or any process argv."""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.fixtures.cluster import read_json
from tests.integration import operator_harness as harness

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
IMAGE = "registry.example/mentorhub:1.4"
FINAL = {"Succeeded", "Failed", "RolledBack"}
NOTES = [{"version": "0001", "name": "create_notes", "up": "CREATE TABLE notes (id int PRIMARY KEY);"}]
BROKEN = [{"version": "0001", "name": "create_notes", "up": "CREATE TABLE notes (id int PRIMARY KEY);"},
          {"version": "0002", "name": "broken", "up": "ALTER TABLE no_such_table ADD COLUMN x int;"}]
CREATE_THINGS = ("import os, psycopg\n"
                 "with psycopg.connect(os.environ.get('DATABASE_URL', ''), autocommit=True) as c:\n"
                 "    c.execute('CREATE TABLE IF NOT EXISTS things (id int)')\n")
# A careless application: it prints its connection URL, then fails. The operator quotes its output in status.
LEAKY_FAILURE = "import os\nprint('connecting to', os.environ['DATABASE_URL'])\nraise SystemExit(3)\n"


class ArgvWatch:
    """Polls every process's argv on the machine (Job pods run as local processes) for the canary."""

    def __init__(self, canary: str) -> None:
        self.canary = canary.encode()
        self.hits: list[str] = []
        self.processes: set[int] = set()
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.polls += 1
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    argv = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                self.processes.add(int(entry.name))
                if self.canary in argv:
                    self.hits.append(argv.replace(b"\0", b" ").replace(self.canary, b"<CANARY>").decode(
                        errors="replace")[:300])

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def paths_to(value: Any, needle: str, path: str = "") -> list[str]:
    """Where in a JSON document a string occurs (for a message naming the leak)."""
    if isinstance(value, dict):
        return [hit for key, item in value.items() for hit in paths_to(item, needle, f"{path}.{key}")]
    if isinstance(value, list):
        return [hit for index, item in enumerate(value) for hit in paths_to(item, needle, f"{path}[{index}]")]
    return [path] if needle in str(value) else []


def user_program_output(pod: dict[str, Any]) -> bool:
    """The pod of the careless program: it printed its own URL (its output is the user's, like its log)."""
    labels = pod["metadata"].get("labels") or {}
    return labels.get("dbops.io/name") == "cmd-bad" and labels.get("dbops.io/role") == "command"


def command_source(program: str) -> dict[str, Any]:
    return {"command": {"image": IMAGE, "command": [sys.executable, "-c", program]}}


def test_a_canary_password_leaks_nowhere_on_any_path(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, minio_server: MinioServer,
        bucket: str, database: tuple[PostgresServer, str]) -> None:
    server, source = database
    canary = f"Canary{uuid.uuid4().hex}"
    user = f"canary_{uuid.uuid4().hex[:8]}"
    server.psql(f"CREATE ROLE {user} LOGIN SUPERUSER PASSWORD '{canary}'")
    server.psql("CREATE TABLE users (id serial primary key, email text not null);"
                "INSERT INTO users (email) SELECT 'u' || g || '@x' FROM generate_series(1, 300) g;", source)
    scratch = {key: f"canary_{key}_{uuid.uuid4().hex[:6]}" for key in ("restore", "sql", "sqlbad", "cmd", "cmdbad")}
    for name in scratch.values():
        server.create_database(name)
    try:
        _run_every_path(operator, kube_client, namespace, minio_server, bucket, server, source, canary, user,
                        scratch)
    finally:
        for name in scratch.values():
            server.drop_database(name)
        server.psql(f"DROP ROLE IF EXISTS {user}")


def _run_every_path(operator: harness.RunningOperator, kube_client: Any, namespace: str, minio_server: MinioServer,
                    bucket: str, server: PostgresServer, source: str, canary: str, user: str,
                    scratch: dict[str, str]) -> None:
    uri = {key: server.uri(name, user=user, password=canary) for key, name in scratch.items()}
    harness.create_secret(kube_client, namespace, "canary", {
        "uri": server.uri(source, user=user, password=canary), "password": canary, "user": user,
        "wrong-uri": server.uri(source, password=canary), **uri})
    storage = harness.s3_storage(minio_server, bucket)

    def by_uri(key: str) -> dict[str, Any]:
        return {"uriSecretRef": {"name": "canary", "key": key}}

    def by_fields(name: str, user_name: str = user) -> dict[str, Any]:
        return {"host": server.host, "port": server.port, "name": name, "user": user_name,
                "passwordSecretRef": {"name": "canary", "key": "password"}}

    expected = {
        ("DatabaseBackup", "ok"): "Succeeded", ("DatabaseBackup", "ok-fields"): "Succeeded",
        ("DatabaseBackup", "wrong"): "Failed", ("DatabaseBackup", "wrong-fields"): "Failed",
        ("DatabaseRestore", "ok"): "Succeeded", ("DatabaseRestore", "wrong"): "Failed",
        ("DatabaseMigration", "sql"): "Succeeded", ("DatabaseMigration", "sql-bad"): "Failed",
        ("DatabaseMigration", "cmd"): "Succeeded", ("DatabaseMigration", "cmd-bad"): "RolledBack",
    }
    with ArgvWatch(canary) as argv:
        backup = {"storage": storage, "verify": {"decode": True}}
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "ok", {"database": by_uri("uri"), **backup})
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "ok-fields",
                                {"database": by_fields(source), **backup})
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "wrong",
                                {"database": by_uri("wrong-uri"), **backup})
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "wrong-fields",
                                {"database": by_fields(source, server.user), **backup})
        harness.create_resource(kube_client, namespace, "DatabaseBackupSchedule", "nightly", {
            "schedule": "*/1 * * * *", "retention": {"keepLast": 1},
            "backupTemplate": {"spec": {"database": by_fields(source), "storage": storage,
                                        "verify": {"decode": False}}}})
        harness.create_resource(kube_client, namespace, "DatabaseMigration", "sql", {
            "database": by_fields(scratch["sql"]), "source": {"inline": NOTES}, "baselineVersion": "0000",
            "rehearsal": {"enabled": True, "backupRef": {"name": "ok"}},
            "verify": {"jobs": [{"name": "api", "image": IMAGE, "command": [sys.executable, "-c", CREATE_THINGS]}]}})
        harness.create_resource(kube_client, namespace, "DatabaseMigration", "sql-bad", {
            "database": by_uri("sqlbad"), "source": {"inline": BROKEN}, "baselineVersion": "0000",
            "preChecks": {"enabled": False}})
        harness.create_resource(kube_client, namespace, "DatabaseMigration", "cmd", {
            "database": by_fields(scratch["cmd"]), "source": command_source(CREATE_THINGS)})
        harness.create_resource(kube_client, namespace, "DatabaseMigration", "cmd-bad", {
            "database": by_uri("cmdbad"), "source": command_source(LEAKY_FAILURE), "preChecks": {"enabled": False},
            "backup": {"enabled": True, "storage": storage}, "onFailure": "RestoreBackup"})
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "ok", {"Succeeded"})
        harness.create_resource(kube_client, namespace, "DatabaseRestore", "ok", {
            "source": {"backupRef": {"name": "ok"}}, "target": {"database": by_uri("restore")},
            "clean": True, "confirmOverwrite": scratch["restore"]})
        harness.create_resource(kube_client, namespace, "DatabaseRestore", "wrong", {
            "source": {"backupRef": {"name": "ok"}}, "target": {"database": by_fields(scratch["restore"], server.user)},
            "clean": True, "confirmOverwrite": scratch["restore"]})
        for (kind, name), phase in expected.items():
            body = harness.wait_for_phase(kube_client, namespace, kind, name, FINAL, timeout=400)
            assert body["status"]["phase"] == phase, (kind, name, body["status"])

        def scheduled() -> dict[str, Any] | None:
            body = harness.get_resource(kube_client, namespace, "DatabaseBackupSchedule", "nightly") or {}
            return body if (body.get("status") or {}).get("lastSuccessfulBackup") else None

        harness.eventually(scheduled, timeout=240, message="a scheduled backup to succeed")
    assert operator.alive()
    assert argv.hits == [], argv.hits

    core, batch = client.CoreV1Api(kube_client), client.BatchV1Api(kube_client)
    places: dict[str, str] = {"operator log": operator.logs()}
    for kind in ("DatabaseBackup", "DatabaseRestore", "DatabaseMigration", "DatabaseBackupSchedule"):
        places[f"{kind} objects"] = json.dumps(harness.list_resources(kube_client, namespace, kind))
    places["events"] = json.dumps(harness.list_events(kube_client, namespace))
    jobs = harness.list_jobs(kube_client, namespace)
    places["jobs"] = json.dumps(jobs)
    places["cronjobs"] = json.dumps(read_json(batch.list_namespaced_cron_job(namespace, _preload_content=False)))
    places["configmaps"] = json.dumps(read_json(core.list_namespaced_config_map(namespace, _preload_content=False)))
    pods = harness.list_pods(kube_client, namespace)
    leaked_in_pods: list[str] = []
    for pod in pods:
        hits = paths_to(pod, canary)
        if user_program_output(pod):  # the kubelet keeps the failed program's log tail as its termination message
            hits = [hit for hit in hits if not hit.endswith(".state.terminated.message")]
        leaked_in_pods += [f"pod {pod['metadata']['name']}{hit}" for hit in hits]
    logged = 0
    for pod in pods:
        if user_program_output(pod):
            continue  # the user's own program printed its URL: its log is theirs; its quote in status is checked
        text = core.read_namespaced_pod_log(pod["metadata"]["name"], namespace)
        places[f"log of pod {pod['metadata']['name']}"] = text
        logged += 1
    leaked = sorted(f"{place}: {paths_to(json.loads(text), canary) if text.startswith(('{', '[')) else ''}"
                    for place, text in places.items() if canary in text)
    assert leaked + leaked_in_pods == [], leaked + leaked_in_pods

    # Job specs: every credential comes from a Secret reference, never a literal value.
    for job in jobs:
        for container in job["spec"]["template"]["spec"].get("containers", []) + job["spec"]["template"]["spec"].get(
                "initContainers", []):
            for env in container.get("env") or []:
                if any(word in env["name"].upper() for word in ("PASSWORD", "DATABASE_URL", "URI", "SECRET")):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], (job["metadata"]["name"], env)
    roles = {job["metadata"]["labels"]["dbops.io/role"] for job in jobs}
    assert {"backup", "verify", "restore", "check", "plan", "apply", "command", "rehearse", "smoke", "trigger"} <= roles, roles
    failed = harness.get_resource(kube_client, namespace, "DatabaseMigration", "cmd-bad") or {}
    assert "connecting to" in failed["status"]["message"], failed["status"]  # the output is quoted, redacted
    rollback = harness.get_resource(kube_client, namespace, "DatabaseRestore", failed["status"]["restoreName"]) or {}
    assert rollback["status"]["phase"] == "Succeeded", rollback  # the rollback path ran, with the canary too
    rehearsed = harness.get_resource(kube_client, namespace, "DatabaseMigration", "sql") or {}
    assert rehearsed["status"]["rehearsal"]["outcome"] == "Passed", rehearsed["status"]
    print(f"R14 on PostgreSQL {server.major}: {len(expected) + 1} resources, {len(jobs)} Jobs ({sorted(roles)}), "
          f"{logged} pod logs, {len(places)} places scanned, argv of {len(argv.processes)} processes polled "
          f"{argv.polls} times: 0 hits")
