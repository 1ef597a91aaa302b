"""R10: 1,000 random label, annotation and spec edits while a backup, a restore and a migration run and after
they end (the operator killed and restarted once mid-storm): a terminal phase never regresses, no Job starts again
for a finished run, the operator never crashes."""

from __future__ import annotations

import random
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.integration import operator_harness as harness
from tests.integration.storm_watch import Recorder, Seen

from dbops.api.base import GROUP, VERSION
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
EDITS = 1000
REVISIONS = 0  # mid-run revision edits: test_operator_midrun_edit.py (a known defect)
TERMINAL = {"Succeeded", "Failed", "RolledBack"}
KINDS = ("DatabaseBackup", "DatabaseRestore", "DatabaseMigration")
NOTES = [{"version": "0001", "name": "create_notes", "up": "CREATE TABLE notes (id int PRIMARY KEY, body text);"},
         {"version": "0002", "name": "fill_notes",
          "up": "INSERT INTO notes SELECT g, 'n' || g FROM generate_series(1, 20000) g;"},
         {"version": "0003", "name": "index_notes", "up": "CREATE INDEX notes_body ON notes (body);"},
         {"version": "0004", "name": "slow", "up": "SELECT pg_sleep(6);"}]  # keeps the run going through edits
Edit = Callable[[random.Random], dict[str, Any]]


def _word(rng: random.Random, size: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(size))


def metadata_edit(rng: random.Random) -> dict[str, Any]:
    """Add, change or remove a label or an annotation."""
    field = rng.choice(["labels", "annotations"])
    key = rng.choice(["storm", "team", "example.com/owner", "argocd.argoproj.io/instance", f"k{rng.randrange(9)}"])
    value = None if rng.random() < 0.3 else (_word(rng) if field == "labels" else rng.choice(
        ["x", "a longer note: with spaces", '{"json": true}', _word(rng, 40)]))
    return {"metadata": {field: {key: value}}}


def template_edit(rng: random.Random) -> dict[str, Any]:
    """A change to the Jobs the resource would create."""
    return {"jobTemplate": rng.choice([
        {"podLabels": {"storm": _word(rng)}}, {"podAnnotations": {"storm": _word(rng, 20)}},
        {"activeDeadlineSeconds": rng.randrange(600, 7200)}, {"backoffLimit": rng.randrange(0, 3)},
        {"ttlSecondsAfterFinished": rng.choice([None, 3600, 86400])},
        {"resources": {"requests": {"cpu": rng.choice(["10m", "50m"]), "memory": rng.choice(["64Mi", "128Mi"])}}}])}


def backup_edit(rng: random.Random) -> dict[str, Any]:
    """A spec change that would change the backup's work (where it goes, how it is compressed and verified)."""
    codec = rng.choice(["zstd", "gzip", "none"])
    return {"spec": rng.choice([
        {"verify": {"decode": rng.random() < 0.5}},
        {"compression": {"codec": codec, "level": rng.randrange(1, 10)}},
        {"storage": {"s3": {"prefix": rng.choice(["ops", "elsewhere", f"p-{_word(rng, 4)}"])}}},
        {"scope": {"excludeTableData": rng.choice([[], ["bookings"]])}},
        {"deletionPolicy": rng.choice(["Retain", "Delete"])},
        {"ttl": rng.choice([None, "720h", "48h"])},
        template_edit(rng)])}


def restore_edit(rng: random.Random) -> dict[str, Any]:
    """A spec change that would change the restore's work."""
    return {"spec": rng.choice([
        {"verify": {"rowCounts": rng.random() < 0.5}}, {"terminateConnections": rng.random() < 0.5},
        {"parallelJobs": rng.choice([1, 2])}, {"clean": rng.random() < 0.5}, template_edit(rng)])}


def migration_edit(rng: random.Random) -> dict[str, Any]:
    """Approval edits (not part of the run's revision) and, now and then, a setting that is: by design a new
    revision runs once the current run finished (at most REVISIONS of these, while it runs)."""
    if rng.random() < 0.04:
        return {"spec": {"timeouts": {"lockRetries": rng.randrange(0, 8)}}}
    if rng.random() < 0.5:
        return {"spec": {"approval": rng.choice([
            {"mode": "Automatic", "approvedPlanHash": ""},
            {"mode": "Manual", "approvedPlanHash": uuid.uuid4().hex[:rng.choice([12, 16, 32])]}])}}
    return {"metadata": {"annotations": {"storm/note": _word(rng, 12)}}}


SPEC_EDITS: dict[str, Edit] = {"DatabaseBackup": backup_edit, "DatabaseRestore": restore_edit,
                               "DatabaseMigration": migration_edit}


def patch(kube_client: Any, namespace: str, kind: str, name: str, body: dict[str, Any]) -> None:
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, harness.PLURALS[kind], name, body, _preload_content=False)


def check_history(kind: str, name: str, seen: list[Seen]) -> tuple[str, int, int]:
    """Per run (a migration's source hash; one run for the other kinds): a terminal phase, its completion time and
    its Ready condition never change, and the conditions agree with the phase; a finished run never comes back."""
    finished: dict[Any, tuple[Any, ...]] = {}
    runs: list[Any] = []
    after = 0
    for event in seen:
        status = event.body.get("status") or {}
        phase, run = status.get("phase"), status.get("sourceHash")
        if kind == "DatabaseMigration" and run is None:
            continue  # not observed yet: its run has no revision
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        failed = next((c for c in status.get("conditions") or [] if c["type"] == "Failed"), None)
        if phase == "Succeeded":
            assert ready and ready["status"] == "True" and not (failed and failed["status"] == "True"), status
        if phase in ("Failed", "RolledBack"):
            assert ready and ready["status"] == "False", status
        if run not in runs:
            runs.append(run)
        assert run == runs[-1], f"{kind} {name} went back to the run of {run} (event {event.sequence})"
        now = (phase, status.get("completedAt"), ready and ready["status"])
        if run in finished:
            after += 1
            assert now == finished[run], f"{kind} {name} left {finished[run]} for {now} (event {event.sequence})"
        elif phase in TERMINAL:
            finished[run] = now
    assert runs[-1] in finished, f"{kind} {name} never reached a terminal phase"
    return str(finished[runs[-1]][0]), after, len(runs)


def storm(kube_client: Any, namespace: str, kind: str, recorder: Recorder, counts: Counter[str]) -> None:
    """A third of the edits to one resource: as fast as the API server takes them while it runs, and at least a
    quarter of them after it finished (those wait for the end)."""
    rng = random.Random(f"20261130-{kind}")

    def finished() -> bool:
        versions = recorder.of(kind, "storm")
        return bool(versions) and (versions[-1].body.get("status") or {}).get("phase") in TERMINAL

    share = EDITS // len(KINDS) + (kind == KINDS[0]) * (EDITS % len(KINDS))
    for number in range(share):
        if number == share * 3 // 4 and not finished():
            harness.eventually(finished, timeout=400, message=f"the {kind} to finish")
        done = finished()
        edit = metadata_edit(rng) if rng.random() < 0.4 else SPEC_EDITS[kind](rng)
        if "timeouts" in edit.get("spec", {}):
            if done or counts["new revisions"] >= REVISIONS:
                edit = metadata_edit(rng)  # after the end a new revision is a new run, by design: not here
            else:
                counts["new revisions"] += 1
        try:
            patch(kube_client, namespace, kind, "storm", edit)
        except ApiException as error:
            if error.status != 422:  # a random value the API server refuses is counted; anything else is not fine
                counts[f"error {error.status}"] += 1
            counts["refused"] += 1
            continue
        counts["after" if done else "during"] += 1
        if done and counts["after"] == 1:
            counts["first edit after the end"] = counts["during"] + counts["refused"]


def test_a_thousand_random_edits_never_regress_a_terminal_phase(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, minio_server: MinioServer,
        bucket: str, database: tuple[PostgresServer, str]) -> None:
    server, source = database
    server.psql("CREATE TABLE users (id serial primary key, email text not null);"
                "INSERT INTO users (email) SELECT 'u' || g || '@x' FROM generate_series(1, 2000) g;"
                "CREATE TABLE bookings (id serial primary key, user_id int references users(id));"
                "INSERT INTO bookings (user_id) SELECT 1 + g % 2000 FROM generate_series(1, 20000) g;", source)
    target, schema = f"storm_t_{uuid.uuid4().hex[:8]}", f"storm_m_{uuid.uuid4().hex[:8]}"
    server.create_database(target)
    server.create_database(schema)
    try:
        harness.create_secret(kube_client, namespace, "db", {"uri": server.uri(source), "target": server.uri(target),
                                                             "schema": server.uri(schema)})
        storage = harness.s3_storage(minio_server, bucket)
        database_ref = {"uriSecretRef": {"name": "db", "key": "uri"}}
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "base",
                                {"database": database_ref, "storage": storage})
        harness.wait_for_phase(kube_client, namespace, "DatabaseBackup", "base", {"Succeeded"})

        recorder = Recorder(kube_client, namespace, KINDS)
        recorder.start()
        harness.create_resource(kube_client, namespace, "DatabaseBackup", "storm",
                                {"database": database_ref, "storage": storage})
        harness.create_resource(kube_client, namespace, "DatabaseRestore", "storm", {
            "source": {"backupRef": {"name": "base"}},
            "target": {"database": {"uriSecretRef": {"name": "db", "key": "target"}}},
            "clean": True, "confirmOverwrite": target})
        harness.create_resource(kube_client, namespace, "DatabaseMigration", "storm", {
            "database": {"uriSecretRef": {"name": "db", "key": "schema"}}, "source": {"inline": NOTES},
            "baselineVersion": "0000"})

        counts: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
        started = time.monotonic()
        threads = [threading.Thread(target=storm, args=(kube_client, namespace, kind, recorder, counts[kind]))
                   for kind in KINDS]
        for thread in threads:
            thread.start()
        # Mid-storm, once a first resource finished, the operator is SIGKILLed and restarted: on start it re-lists
        # resources whose edits it never saw, where a lost or re-derived status would show as a regression.
        harness.eventually(lambda: any(c["after"] for c in counts.values()) or not any(t.is_alive() for t in threads),
                           timeout=300, message="a first resource to finish")
        operator.kill()
        time.sleep(2)
        operator.start()
        for thread in threads:
            thread.join(timeout=600)
        patch(kube_client, namespace, "DatabaseMigration", "storm",  # a Manual approval must not hold it forever
              {"spec": {"approval": {"mode": "Automatic", "approvedPlanHash": ""}}})
        storming = time.monotonic() - started
        for kind in KINDS:
            harness.wait_for_phase(kube_client, namespace, kind, "storm", TERMINAL, timeout=300)
        time.sleep(15)  # three recheck periods: a regression would show now
        recorder.stop()
        assert operator.alive(), operator.logs()[-3000:]
        assert "Traceback" not in operator.logs()

        outcomes = {}
        jobs = recorder.jobs_of("storm")
        names = [seen[0].body["metadata"]["name"] for seen in jobs.values()]
        assert len(names) == len(set(names)), names  # no Job created twice
        for kind in KINDS:
            phase, after, runs = check_history(kind, "storm", recorder.of(kind, "storm"))
            outcomes[kind] = f"{phase} ({runs} run(s), {after} later versions)"
            owned = {uid: seen for uid, seen in jobs.items()
                     if seen[0].body["metadata"]["labels"].get("dbops.io/kind") == kind}
            assert owned, kind
            roles = Counter(seen[0].body["metadata"]["labels"]["dbops.io/role"] for seen in owned.values())
            assert set(roles.values()) <= set(range(1, runs + 1)), (kind, roles)  # one Job per role and run
            if kind != "DatabaseMigration":
                assert runs == 1, kind
            final = recorder.of(kind, "storm")
            last_terminal = next(e.sequence for e in final if (e.body.get("status") or {}).get("phase") in TERMINAL
                                 and (e.body.get("status") or {}).get("sourceHash")
                                 == (final[-1].body.get("status") or {}).get("sourceHash"))
            late = [seen[0].body["metadata"]["name"] for seen in owned.values()
                    if seen[0].type == "ADDED" and seen[0].sequence > last_terminal]
            assert late == [], f"{kind}: Jobs created after the run finished: {late}"
        assert counts["DatabaseMigration"]["new revisions"] <= REVISIONS
        total = sum(counts.values(), Counter())
        print(f"R10 on PostgreSQL {server.major}: {total['during'] + total['after']} edits admitted "
              f"({total['during']} while running, {total['after']} after the end, {total['refused']} refused) "
              f"in {storming:.0f}s; per kind {dict(counts)}; outcomes {outcomes}; watch reconnects "
              f"{len(recorder.errors)}; the operator SIGKILLed and restarted once mid-storm")
        assert total["during"] + total["after"] + total["refused"] == EDITS, counts
        assert not [key for key in total if key.startswith("error")], counts
        assert total["during"] >= 100 and total["after"] >= 100, counts
        assert all(counts[kind]["during"] >= 10 for kind in KINDS), counts
        assert all(counts[kind]["after"] >= 50 for kind in KINDS), counts
    finally:
        server.drop_database(target)
        server.drop_database(schema)
