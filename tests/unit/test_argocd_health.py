"""Argo CD health checks (manifests/argocd) in a real Lua 5.1, on statuses captured from real runs."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests import argocd

from dbops.api.kinds import ALL_KINDS

CASES = [(kind, name, expected, obj) for kind in argocd.KINDS for name, expected, obj in argocd.load_cases(kind)]


@pytest.mark.parametrize(("kind", "name", "expected", "obj"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_captured_status_gets_the_expected_health(kind: str, name: str, expected: dict[str, str],
                                                  obj: dict[str, object]) -> None:
    assert argocd.health(kind, obj) == expected


@pytest.mark.parametrize(("kind", "states"), [
    ("DatabaseBackup", {"Progressing", "Healthy", "Degraded"}),
    ("DatabaseRestore", {"Progressing", "Healthy", "Degraded"}),
    ("DatabaseMigration", {"Progressing", "Suspended", "Healthy", "Degraded"}),
    ("DatabaseBackupSchedule", {"Progressing", "Suspended", "Healthy", "Degraded"}),
])
def test_captured_cases_cover_every_health_state_of_a_kind(kind: str, states: set[str]) -> None:
    assert {expected["status"] for _, expected, _ in argocd.load_cases(kind)} == states


def test_a_migration_hook_holds_the_sync_until_it_succeeds() -> None:
    # gitops-engine runs a hook while it is Progressing or Suspended, fails the sync on Degraded.
    cases = {name: expected["status"] for name, expected, _ in argocd.load_cases("DatabaseMigration")}
    assert cases["gated-awaitingapproval"] == "Suspended" and cases["windowed-waiting"] == "Suspended"
    assert cases["gated-succeeded"] == "Healthy"
    assert cases["rolled-back-rolledback"] == "Degraded" and cases["broken-failed"] == "Degraded"
    assert all(status == "Progressing" for name, status in cases.items() if name.endswith("-nostatus"))


def _captured(kind: str, name: str) -> dict[str, object]:
    return copy.deepcopy(next(obj for case, _, obj in argocd.load_cases(kind) if case == name))


def test_an_invalid_spec_is_degraded_with_its_message() -> None:
    obj = _captured("DatabaseBackup", "missing-secret-pending")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")  # type: ignore[index]
    ready.update(reason="InvalidSpec", message="invalid spec: storage.s3.bucket: bad")
    assert argocd.health("DatabaseBackup", obj) == {"status": "Degraded", "message": "invalid spec: storage.s3.bucket: bad"}


def test_a_terminal_failed_condition_makes_any_kind_degraded() -> None:
    for kind, name in (("DatabaseBackup", "nightly-running"), ("DatabaseRestore", "restore-nightly-restoring"),
                       ("DatabaseMigration", "gated-migrating")):
        obj = _captured(kind, name)
        obj["status"]["conditions"].append(  # type: ignore[index]
            {"type": "Failed", "status": "True", "reason": "JobFailed", "message": "the Job failed",
             "lastTransitionTime": "2026-11-29T20:00:00Z"})
        assert argocd.health(kind, obj) == {"status": "Degraded", "message": "the Job failed"}


def test_a_schedule_whose_run_cannot_start_is_degraded_until_a_later_run_succeeded() -> None:
    name = next(case for case, expected, _ in argocd.load_cases("DatabaseBackupSchedule")
                if expected["status"] == "Healthy")
    obj = _captured("DatabaseBackupSchedule", name)
    message = ("scheduled run: Job nightly-cron-29412345 container runner (image dbops:tset) cannot start: "
               'ImagePullBackOff: Back-off pulling image "dbops:tset"')
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")  # type: ignore[index]
    ready.update(reason="ImagePullFailed", message=message)
    failure = {"jobName": "nightly-cron-29412345", "reason": "ImagePullFailed", "message": message,
               "createdAt": "2026-11-30T03:00:00Z"}
    obj["status"]["lastStartFailure"] = failure  # type: ignore[index]
    assert argocd.health("DatabaseBackupSchedule", obj) == {"status": "Degraded", "message": message}
    failure["recoveredAt"] = "2026-11-30T03:10:00Z"
    ready.update(reason="Active", message="3 backups retained")
    assert argocd.health("DatabaseBackupSchedule", obj)["status"] == "Healthy"


@pytest.mark.parametrize(("path", "render"), [(argocd.ARGOCD_CM, argocd.render_argocd_cm),
                                              (argocd.HELM_TEMPLATE, argocd.render_helm_template)],
                         ids=["argocd-cm", "helm-template"])
def test_argocd_cm_snippets_carry_the_same_lua(path: Path, render: Callable[[], str]) -> None:
    text = render()
    if os.environ.get("DBOPS_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.read_text() == text, f"{path} is stale; run DBOPS_UPDATE_GOLDEN=1 pytest tests/unit"


def test_argocd_cm_entries_are_the_lua_files() -> None:
    data = yaml.safe_load(argocd.ARGOCD_CM.read_text())["data"]
    assert data == {f"resource.customizations.health.dbops.io_{kind}": argocd.script(kind) for kind in argocd.KINDS}
    values = yaml.safe_load((argocd.ROOT / "helm" / "dbops" / "values.yaml").read_text())
    assert values["argocd"]["healthChecks"] == {"enabled": False, "namespace": "argocd"}


@pytest.mark.parametrize("path", sorted((argocd.ROOT / "manifests" / "argocd" / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_gitops_examples_never_delete_a_running_migration(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document["kind"] != "DatabaseMigration":
            continue
        next(k for k in ALL_KINDS if k.kind == "DatabaseMigration").spec.model_validate(document["spec"])
        annotations = document["metadata"].get("annotations") or {}
        policy = annotations.get("argocd.argoproj.io/hook-delete-policy", "")
        assert "HookSucceeded" not in policy and "HookFailed" not in policy
        if "argocd.argoproj.io/hook" in annotations:
            assert policy == "BeforeHookCreation"
        else:
            assert int(annotations["argocd.argoproj.io/sync-wave"]) < 0
