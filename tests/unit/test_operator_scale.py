"""P7/P8 at 5,000 resources: the running-Job cache never makes a Job read as missing or lost, re-checks coalesce
and spread out, Secrets read lately are not read again."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any
from unittest import mock

import pytest

from dbops import errors
from dbops.api.common import SecretKeySelector
from dbops.controller import driver, job_cache
from dbops.controller.job_cache import JOBS
from dbops.controller.requeue import RECHECKS_PER_SECOND, Requeue
from dbops.kube import objects


def job(name: str, *, conditions: list[dict[str, str]] | None = None, ready: int = 0,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"namespace": "ns", "name": name, "uid": uuid.uuid4().hex,
                         "labels": {"app.kubernetes.io/managed-by": "dbops"} if labels is None else labels},
            "spec": {"template": {"spec": {"containers": [{"name": "runner", "image": "dbops"}]}}},
            "status": {"active": 1, "ready": ready, "conditions": conditions or []}}


COMPLETE = [{"type": "Complete", "status": "True"}]


@pytest.fixture
def name() -> Any:
    name = f"b-{uuid.uuid4().hex[:8]}-backup"
    yield name
    JOBS.gone("ns", name)


def test_a_running_job_the_watch_showed_is_read_without_a_get(name: str) -> None:
    JOBS.seen(job(name, ready=1))
    with mock.patch.object(driver.kube_jobs, "get_job", side_effect=AssertionError("GET")):
        assert driver.read_job("ns", name).state == "Running"


def test_a_job_the_cache_does_not_hold_is_read_and_missing_only_when_the_api_server_says_so(name: str) -> None:
    # "Missing" decides a creation or a lost Job: it is never taken from the cache.
    with mock.patch.object(driver.kube_jobs, "get_job", return_value=None) as get:
        assert driver.read_job("ns", name).state == "Missing"
    assert get.call_count == 1
    running = job(name, ready=1)
    with mock.patch.object(driver.kube_jobs, "get_job", return_value=running) as get:
        assert driver.read_job("ns", name).state == "Running"
        assert driver.read_job("ns", name).state == "Running"  # the GET filled the cache
    assert get.call_count == 1


def test_a_job_deleted_while_the_cache_is_stale_is_found_missing_after_max_age(name: str) -> None:
    # The watch missed the deletion (a re-list after 410 Gone sends no DELETED): the entry ages out, the next read
    # asks the API server, and the lost Job is seen as lost.
    JOBS.seen(job(name, ready=1))
    later = time.monotonic() + job_cache.MAX_AGE_SECONDS + 1
    with mock.patch.object(job_cache.time, "monotonic", return_value=later), \
            mock.patch.object(driver.kube_jobs, "get_job", return_value=None) as get:
        assert driver.read_job("ns", name).state == "Missing"
    assert get.called


def test_a_deleted_or_finished_job_is_read_again(name: str) -> None:
    JOBS.seen(job(name))
    JOBS.seen(job(name), deleted=True)
    with mock.patch.object(driver.kube_jobs, "get_job", return_value=None) as get:
        assert driver.read_job("ns", name).state == "Missing"
    assert get.called
    JOBS.seen(job(name))
    finished = job(name, conditions=COMPLETE)
    JOBS.seen(finished)  # its outcome needs the full Job and its pods
    with mock.patch.object(driver.kube_jobs, "get_job", return_value=finished) as get, \
            mock.patch.object(driver.kube_jobs, "job_pods", return_value=[]) as pods:
        assert driver.read_job("ns", name).state == "Succeeded"
    assert get.called and pods.called


def test_a_cached_job_whose_pod_is_not_ready_still_shows_why(name: str) -> None:
    JOBS.seen(job(name, ready=0))
    pending = {"metadata": {"name": f"{name}-x", "creationTimestamp": "2026-01-01T00:00:00Z"},
               "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                          "message": 'persistentvolumeclaim "scratch" not found'}]}}
    with mock.patch.object(driver.kube_jobs, "get_job", side_effect=AssertionError("GET")), \
            mock.patch.object(driver.kube_jobs, "job_pods", return_value=[pending]):
        outcome = driver.read_job("ns", name)
    assert (outcome.state, outcome.reason) == ("Running", "VolumeNotReady")


def test_a_job_dbops_did_not_make_is_never_cached(name: str) -> None:
    foreign = job(name, labels={"app": "other"})
    with mock.patch.object(driver.kube_jobs, "get_job", return_value=foreign) as get:
        for _ in range(2):
            with pytest.raises(errors.PermanentError, match="not made by dbops"):
                driver.read_job("ns", name)
    assert get.call_count == 2


def test_a_job_dbops_deleted_is_read_again(name: str) -> None:
    from dbops.controller import effects
    from dbops.reconcile.actions import Decision
    from dbops.specs.owner import Owner

    JOBS.seen(job(name, ready=1))
    owner = Owner(kind="DatabaseBackup", namespace="ns", name="b", uid="u", generation=1)
    decision = Decision(mock.Mock())
    decision.delete.append({"apiVersion": "batch/v1", "kind": "Job", "name": name})
    with mock.patch.object(effects.objects, "delete", return_value=True):
        effects.carry_out(owner, decision)
    assert JOBS.running("ns", name) is None


def test_wake_ups_waiting_for_a_worker_stay_one_per_resource() -> None:
    # 5,000 re-checks due while the reconciles lag behind: each resource is reconciled once, not once per re-arm.
    queue = Requeue()
    release = threading.Event()
    runs: list[tuple[str, str, str]] = []
    started = threading.Event()

    def callback(*key: str) -> None:
        runs.append(key)
        started.set()
        release.wait(10)

    queue.start(callback, workers=1)
    keys = [("DatabaseBackup", "ns", f"b-{i}") for i in range(20)]
    for key in keys:
        queue.after(key, 0)
    assert started.wait(10)
    for _ in range(3):  # events and re-checks re-arm every resource while the one worker is busy
        for key in keys:
            queue.after(key, 0)
    assert queue.size() <= len(keys)
    release.set()
    deadline = time.monotonic() + 10
    while len(runs) < len(keys) + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    # The one running when the re-arms came runs once more (an event during a reconcile is looked at again).
    assert sorted(runs) == sorted([*keys, runs[0]])


def test_rechecks_spread_out_beyond_their_rate() -> None:
    queue = Requeue()  # not started: only the due times are looked at
    count = int(RECHECKS_PER_SECOND * 30)
    for i in range(count):
        queue.recheck(("DatabaseBackup", "ns", f"b-{i}"), 10)
    first = queue.pending(("DatabaseBackup", "ns", "b-0"))
    last = queue.pending(("DatabaseBackup", "ns", f"b-{count - 1}"))
    assert first is not None and first <= 10
    assert last is not None and last > 25
    # A decision's own requeue_after is not stretched.
    queue.after(("DatabaseMigration", "ns", "m"), 5)
    pending = queue.pending(("DatabaseMigration", "ns", "m"))
    assert pending is not None and pending <= 5


def test_a_secret_read_lately_is_not_read_again_but_a_missing_key_is() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    refs = [SecretKeySelector(name="db", key="uri"), SecretKeySelector(name="db", key="password")]
    secret = {"metadata": {"name": "db"}, "data": {"uri": "eA==", "password": "eA=="}}
    with mock.patch.object(objects, "get", return_value=secret) as get:
        driver.require_secrets(namespace, refs)
        driver.require_secrets(namespace, refs)
    assert get.call_count == 1
    with mock.patch.object(objects, "get", return_value=secret) as get, \
            pytest.raises(errors.MissingReferenceError, match="no key token"):
        driver.require_secrets(namespace, [SecretKeySelector(name="db", key="token")])
    assert get.call_count == 1  # a key not seen is read again: a Secret fixed since is seen at once
    with mock.patch.object(objects, "get", return_value=None), \
            mock.patch.object(objects.time, "monotonic", return_value=time.monotonic() + 11), \
            pytest.raises(errors.MissingReferenceError, match="not found"):
        driver.require_secrets(namespace, refs)


def test_a_new_backup_reads_no_job_and_adopts_one_an_earlier_operator_left_then_looks_again() -> None:
    # R7 without the 404 GET: a backup with no status has no recorded Job; if an operator stopped between creating
    # the Job and writing the status, the create meets it (409), adopts it (no second Job) and reads it soon.
    from dbops.controller import backup, effects
    from dbops.controller.requeue import REQUEUE

    name = f"b-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": "dbops.io/v1alpha1", "kind": "DatabaseBackup",
            "metadata": {"namespace": "ns", "name": name, "uid": "uid-new", "generation": 1,
                         "resourceVersion": "5"},
            "spec": {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "storage": {"s3": {"bucket": "bkt"}}}}
    left = job(f"{name}-backup")
    left["metadata"]["ownerReferences"] = [{"kind": "DatabaseBackup", "name": name, "uid": "uid-new"}]
    secret = {"metadata": {"name": "db"}, "data": {"uri": "eA=="}}
    key = ("DatabaseBackup", "ns", name)
    try:
        with mock.patch.object(driver.kube_jobs, "get_job", side_effect=AssertionError("GET Job")), \
                mock.patch.object(objects, "get", return_value=secret), \
                mock.patch.object(effects.objects, "create_or_adopt", return_value=(left, False)) as create, \
                mock.patch.object(driver.objects, "patch_status") as patch, \
                mock.patch.object(driver.events, "emit"):
            driver.run(backup.CONTROLLER, "ns", name, 0, listed=body)
        assert [call.args[0]["kind"] for call in create.call_args_list] == ["Job"]
        status = patch.call_args.args[3]
        assert status["phase"] == "Running"
        assert [job["uid"] for job in status.get("startedJobs", [])] == [left["metadata"]["uid"]]
        pending = REQUEUE.pending(key)
        assert pending is not None and pending <= effects.ADOPTED_RECHECK_SECONDS
    finally:
        REQUEUE.forget(key)
        JOBS.gone("ns", left["metadata"]["name"])
