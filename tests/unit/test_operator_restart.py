"""P8 restart: Kopf's worker slots turn over quickly and running Jobs' events never reach the handler threads."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any
from unittest import mock

import kopf

from dbops.controller import backup, startup
from dbops.controller.registry import REGISTRY

importlib.import_module("dbops.controller.handlers")  # registers the handlers in REGISTRY


def job(conditions: list[dict[str, str]]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"namespace": "ns", "name": "b-backup", "labels": {"dbops.io/kind": "DatabaseBackup"}},
            "status": {"active": 1, "ready": 0, "conditions": conditions}}


def event_handlers(plural: str) -> list[Any]:
    return [h for h in REGISTRY._watching.get_all_handlers() if h.selector is not None and h.selector.any_name == plural]


def test_only_finished_jobs_reach_a_handler_thread() -> None:
    # After a restart Kopf re-lists every Job: 5,000 running Jobs were 5,000 sync handler calls queued behind the
    # resources' reconciles (bench/README.md, P8). The filter runs on the event loop.
    # The one Job handler without a filter is async (job_cache): it runs on the event loop, not in a thread.
    handlers = [h for h in event_handlers("jobs") if not asyncio.iscoroutinefunction(h.fn)]
    assert handlers and {h.id for h in event_handlers("jobs")} - {h.id for h in handlers} == {"job-seen"}
    for handler in handlers:
        assert handler.when is not None, handler.id
        assert not handler.when(body=job([]), type=None)
        assert not handler.when(body=job([]), type="MODIFIED")
        assert handler.when(body=job([{"type": "Complete", "status": "True"}]), type="MODIFIED")
        assert handler.when(body=job([{"type": "Failed", "status": "True"}]), type=None)
        assert not handler.when(body=job([{"type": "Complete", "status": "True"}]), type="DELETED")


def test_child_events_reach_a_handler_thread_only_when_the_child_finished() -> None:
    children = [h for h in REGISTRY._watching.get_all_handlers() if str(h.id).startswith("child-finished")]
    assert children
    for handler in children:
        assert handler.when is not None
        assert not handler.when(body={"status": {"phase": "Running"}}, type="MODIFIED")
        assert handler.when(body={"status": {"phase": "Succeeded"}}, type="MODIFIED")
        assert not handler.when(body={"status": {"phase": "Failed"}}, type="DELETED")


def test_worker_slots_are_bounded_and_freed_quickly() -> None:
    settings = kopf.OperatorSettings()
    with mock.patch.object(startup.kube_session, "configure"), mock.patch.object(startup.metrics, "serve"), \
            mock.patch.object(startup.trim, "start"):
        startup.configure(settings=settings)
    assert settings.queueing.worker_limit is not None and settings.queueing.worker_limit <= 256  # P7 memory
    assert settings.queueing.idle_timeout <= 0.5  # P8: an idle slot is a resource not re-listed



def test_a_resumed_resource_is_not_read_again() -> None:
    # Kopf has just listed it at start-up: a GET per resource more was a third of a restart's requests.
    from dbops.controller import driver

    finished: list[dict[str, Any]] = []
    controller = driver.Controller("DatabaseBackup", backup.DatabaseBackupSpec, backup.DatabaseBackupStatus,
                                   reconcile=lambda opened: None,
                                   finished=lambda body, status: finished.append(body))
    listed = {"apiVersion": "dbops.io/v1alpha1", "kind": "DatabaseBackup",
              "metadata": {"namespace": "ns", "name": "b", "uid": "u", "generation": 1, "resourceVersion": "7"},
              "spec": {}, "status": {"phase": "Succeeded"}}
    with mock.patch.object(driver.objects, "get", side_effect=AssertionError("read again")):
        driver.run(controller, "ns", "b", 0, listed=listed)
    assert [body["metadata"]["resourceVersion"] for body in finished] == ["7"]
    with mock.patch.object(driver.objects, "get", return_value={**listed, "metadata": {
            **listed["metadata"], "resourceVersion": "8"}}) as get:
        driver.run(controller, "ns", "b", 0)  # any other cause reads it
    assert get.called and finished[-1]["metadata"]["resourceVersion"] == "8"
