"""P7 memory: Kopf keeps no per-resource body or task, re-checks and ttl are requeue entries, deletion forgets."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from datetime import timedelta
from typing import Any

import pytest

from dbops.api.backup import DatabaseBackupStatus
from dbops.api.status import utcnow
from dbops.controller import backup, driver, locks, metrics, migration
from dbops.controller.config import CONFIG
from dbops.controller.registry import REGISTRY
from dbops.controller.requeue import REQUEUE
from dbops.controller.startup import connection_limit
from dbops.specs.owner import Owner

importlib.import_module("dbops.controller.handlers")  # registers the handlers in REGISTRY


def body(kind: str, name: str, phase: str | None = None, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "dbops.io/v1alpha1", "kind": kind,
            "metadata": {"namespace": "ns", "name": name, "uid": uuid.uuid4().hex, "generation": 1},
            "spec": spec or {}, "status": {"phase": phase} if phase else {}}


@pytest.fixture
def recheck_seconds() -> Any:
    saved = CONFIG.recheck_seconds
    CONFIG.recheck_seconds = 30.0
    yield 30.0
    CONFIG.recheck_seconds = saved


def test_no_kopf_timer_or_daemon_is_registered() -> None:
    # Any timer or daemon for a kind, even one whose filter never matches, makes Kopf keep the last body of every
    # object of that kind (DaemonsMemory.live_fresh_body) and run two asyncio tasks per matching object: ~20 KiB
    # and ~25 KiB per resource at 1,000 DatabaseBackups (bench/README.md, P7).
    spawning = REGISTRY._spawning.get_all_handlers()
    assert not spawning, [handler.id for handler in spawning]
    assert not REGISTRY._indexing.get_all_handlers()


def test_an_unfinished_resource_is_rechecked_through_the_requeue(recheck_seconds: float) -> None:
    unfinished = body("DatabaseBackup", f"b-{uuid.uuid4().hex[:6]}", "Running")
    key = ("DatabaseBackup", "ns", unfinished["metadata"]["name"])
    try:
        driver.recheck_later(backup.CONTROLLER, unfinished)
        pending = REQUEUE.pending(key)
        assert pending is not None and recheck_seconds - 5 < pending <= recheck_seconds
    finally:
        REQUEUE.forget(key)


def test_a_finished_resource_is_not_rechecked_unless_its_kind_asks(recheck_seconds: float) -> None:
    done = body("DatabaseBackup", f"b-{uuid.uuid4().hex[:6]}", "Succeeded")
    driver.recheck_later(backup.CONTROLLER, done)
    assert REQUEUE.pending(("DatabaseBackup", "ns", done["metadata"]["name"])) is None
    inline = body("DatabaseMigration", f"m-{uuid.uuid4().hex[:6]}", "Succeeded", {"source": {"inline": []}})
    driver.recheck_later(migration.CONTROLLER, inline)
    assert REQUEUE.pending(("DatabaseMigration", "ns", inline["metadata"]["name"])) is None
    # A migration from a ConfigMap is re-hashed on each re-check, finished or not.
    sourced = body("DatabaseMigration", f"m-{uuid.uuid4().hex[:6]}", "Succeeded",
                   {"source": {"configMapRef": {"name": "migrations"}}})
    key = ("DatabaseMigration", "ns", sourced["metadata"]["name"])
    try:
        driver.recheck_later(migration.CONTROLLER, sourced)
        assert REQUEUE.pending(key) is not None
    finally:
        REQUEUE.forget(key)


def test_no_recheck_with_recheck_seconds_zero() -> None:
    saved = CONFIG.recheck_seconds
    CONFIG.recheck_seconds = 0
    try:
        unfinished = body("DatabaseBackup", f"b-{uuid.uuid4().hex[:6]}", "Running")
        driver.recheck_later(backup.CONTROLLER, unfinished)
        assert REQUEUE.pending(("DatabaseBackup", "ns", unfinished["metadata"]["name"])) is None
    finally:
        CONFIG.recheck_seconds = saved


def test_a_finished_backup_with_a_ttl_wakes_when_it_expires() -> None:
    finished = body("DatabaseBackup", f"b-{uuid.uuid4().hex[:6]}", "Succeeded")
    owner = Owner.from_body(finished)
    key = ("DatabaseBackup", "ns", owner.name)
    status = DatabaseBackupStatus.model_validate({"phase": "Succeeded"})
    status.expires_at = utcnow() + timedelta(hours=2)
    try:
        backup.expire_later(owner, status)
        pending = REQUEUE.pending(key)
        assert pending is not None and 7100 < pending <= 7200
        REQUEUE.forget(key)
        backup.expire_later(owner, DatabaseBackupStatus.model_validate({"phase": "Succeeded"}))  # no ttl
        assert REQUEUE.pending(key) is None
    finally:
        REQUEUE.forget(key)


def test_a_deleted_resource_leaves_no_lock_retry_wake_up_or_series() -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    key = ("DatabaseBackup", "ns", name)
    with locks.hold(*key):
        pass
    driver.stalled_seconds(key)
    REQUEUE.after(key, 60)
    metrics.PHASES.record(*key, "Running")
    assert key in locks._locks and key in driver._failing_since
    driver.forget(*key)
    assert key not in locks._locks
    assert key not in driver._failing_since
    assert REQUEUE.pending(key) is None
    assert key not in metrics.PHASES._phases


def test_kopf_connections_leave_room_for_requests_beside_every_watch() -> None:
    assert connection_limit(0) == connection_limit(1) > 5 + 2
    assert connection_limit(3) - connection_limit(1) == 10


def test_any_event_of_an_unfinished_resource_arms_its_recheck_and_deletion_drops_it(recheck_seconds: float) -> None:
    # The safety net Kopf's timers were: a resource whose create handler never ran (its patches timed out on a
    # loaded API server) is still reconciled within recheck_seconds of its last event.
    from dbops.controller import handlers

    unseen = body("DatabaseBackup", f"b-{uuid.uuid4().hex[:6]}")
    key = ("DatabaseBackup", "ns", unseen["metadata"]["name"])
    try:
        asyncio.run(handlers._seen(unseen, "MODIFIED"))
        assert REQUEUE.pending(key) is not None
        asyncio.run(handlers._seen(unseen, "DELETED"))
        assert REQUEUE.pending(key) is None
    finally:
        REQUEUE.forget(key)
