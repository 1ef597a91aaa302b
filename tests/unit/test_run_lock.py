"""The run lock of command-mode migrations: who holds the Lease, and what a run decides about it."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from dbops.api.common import DatabaseConnection
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.reconcile import migration as m
from dbops.reconcile import runlock
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import MISSING
from dbops.specs import runlock as specs
from dbops.specs.owner import Owner

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
OWNER = Owner(kind="DatabaseMigration", namespace="prod", name="second", uid="uid-2")
DB = DatabaseConnection.model_validate({"uriSecretRef": {"name": "db", "key": "uri"}})
SPEC = DatabaseMigrationSpec.model_validate({
    "database": DB.to_wire(), "preChecks": {"enabled": True},
    "source": {"command": {"image": "app:1", "command": ["python", "manage.py", "migrate"],
                           "plan": "Disabled"}}})  # the lock, not the plan step, is under test
MANIFEST = specs.build_lease(OWNER, DB, "rev-2", NOW)


def held_by(uid: str, revision: str = "rev-1", rv: str = "7") -> dict[str, Any]:
    lease = specs.build_lease(Owner("DatabaseMigration", "prod", "first", uid), DB, revision, NOW)
    lease["metadata"]["resourceVersion"] = rv
    return lease


def holder(phase: str, source_hash: str = "rev-1", uid: str = "uid-1") -> dict[str, Any]:
    return {"metadata": {"name": "first", "uid": uid}, "status": {"phase": phase, "sourceHash": source_hash}}


def test_the_lease_is_named_after_the_database_not_the_resource() -> None:
    other = Owner("DatabaseMigration", "prod", "another", "uid-9")
    assert specs.build_lease(other, DB, "x", NOW)["metadata"]["name"] == MANIFEST["metadata"]["name"]
    by_host = DatabaseConnection.model_validate({"host": "PG.prod.svc", "name": "app"})
    assert specs.lease_name(by_host) == specs.lease_name(DatabaseConnection.model_validate(
        {"host": "pg.prod.svc", "port": 5432, "name": "app"}))
    assert specs.lease_name(by_host) != specs.lease_name(DatabaseConnection.model_validate(
        {"host": "pg.prod.svc", "name": "billing"}))


def test_lock_states() -> None:
    assert runlock.lock_state(MANIFEST, None, "uid-2", None).state == "Free"
    assert runlock.lock_state(MANIFEST, held_by("uid-2"), "uid-2", None).state == "Ours"
    for phase in ("Checking", "Migrating", "Verifying", "RollingBack", "Pending"):
        state = runlock.lock_state(MANIFEST, held_by("uid-1"), "uid-2", holder(phase))
        assert (state.state, state.holder, state.holder_phase) == ("Held", "DatabaseMigration/first", phase)
    # a holder whose first status write has not landed is still live
    assert runlock.lock_state(MANIFEST, held_by("uid-1"), "uid-2", holder("Pending", "")).state == "Held"
    for body in (None, holder("Succeeded"), holder("RolledBack"), holder("Failed"), holder("Checking", "rev-3"),
                 holder("Checking", uid="uid-recreated")):
        assert runlock.lock_state(MANIFEST, held_by("uid-1"), "uid-2", body).state == "Stale", body


def observe(lock: runlock.RunLock, check: Any = MISSING) -> m.MigrationObserved:
    names = {"check": "c", "command": "x", "verify": "v"}
    return m.MigrationObserved("rev-2", m.MigrationJobs(MISSING, check, MISSING, names), ChildState("pre"),
                               ChildState("rb"), None, "app", lock=lock)


def decide(lock: runlock.RunLock, status: DatabaseMigrationStatus | None = None) -> m.Decision:
    return m.reconcile_migration(SPEC, status or DatabaseMigrationStatus(), observe(lock), generation=1, now=NOW)


def test_a_free_lock_is_taken_before_any_job() -> None:
    decision = decide(runlock.lock_state(MANIFEST, None, "uid-2", None))
    assert decision.jobs == [] and decision.create == [MANIFEST]
    assert decision.status.condition("Ready").reason == "AcquiringLock"  # type: ignore[union-attr]


def test_a_held_lock_waits_with_the_holder_named_and_an_event() -> None:
    decision = decide(runlock.lock_state(MANIFEST, held_by("uid-1"), "uid-2", holder("Migrating")))
    assert decision.jobs == [] and decision.create == [] and decision.delete == []
    assert decision.status.phase == "Waiting"
    assert decision.status.condition("Ready").reason == "WaitingForLock"  # type: ignore[union-attr]
    assert "DatabaseMigration/first (Migrating)" in decision.status.message
    assert [e.reason for e in decision.events] == ["WaitingForLock"]
    again = decide(runlock.lock_state(MANIFEST, held_by("uid-1"), "uid-2", holder("Migrating")), decision.status)
    assert again.events == []  # no new Event while nothing changed


def test_a_stale_lock_is_freed_guarded_by_its_resource_version() -> None:
    decision = decide(runlock.lock_state(MANIFEST, held_by("uid-1", rv="42"), "uid-2", holder("Succeeded")))
    assert decision.jobs == [] and decision.create == []
    assert decision.delete == [{"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "namespace": "prod",
                                "name": MANIFEST["metadata"]["name"], "resourceVersion": "42"}]


def test_our_lock_starts_the_run_and_is_released_when_it_ends() -> None:
    ours = runlock.lock_state(MANIFEST, held_by("uid-2", "rev-2", rv="9"), "uid-2", None)
    decision = decide(ours)
    assert [j.role for j in decision.jobs] == ["check"] and decision.delete == []
    failed = m.reconcile_migration(SPEC, decision.status, dataclasses.replace(
        observe(ours), jobs=m.MigrationJobs(MISSING, m.JobOutcome("Failed", {}, "PreChecksFailed", "no"), MISSING,
                                            {"check": "c", "command": "x", "verify": "v"})), generation=1, now=NOW)
    assert failed.status.phase == "Failed"
    assert failed.delete == [ours.target] and ours.target["resourceVersion"] == "9"
