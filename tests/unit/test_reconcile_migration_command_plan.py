"""DatabaseMigration decisions for command mode's plan: plan Job → status.plan → approval of its hash → confirm → run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.reconcile import command_plan
from dbops.reconcile import migration as m
from dbops.reconcile.children import ChildState
from dbops.reconcile.command_plan import PlanLog
from dbops.reconcile.command_plan_steps import CommandPlanObserved, plan_outcome
from dbops.reconcile.jobs import MISSING, JobOutcome
from dbops.reconcile.pod_start import with_start_problem

NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
REVISION = "0123456789abcdef"
NAMES = {"check": "m-check-1", "command": "m-command-1", "verify": "m-verify-1"}
DJANGO = ["python", "manage.py", "migrate", "--noinput"]
PLAN = """Planned operations:
mentorship.0001_initial
    Create model Mentor
    Create model Booking
mentorship.0002_booking_status
    Add field status to booking
"""
LATER_PLAN = "Planned operations:\nmentorship.0002_booking_status\n    Add field status to booking\n"
NOTHING = "Planned operations:\n  No planned migration operations.\n"
DONE = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
FAILED = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}}
CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m-command-plan-1"}, "data": {}}


def spec(command: list[str] | None = None, **extra: Any) -> DatabaseMigrationSpec:
    source: dict[str, Any] = {"image": "app:1.4", "command": command or DJANGO}
    source.update(extra.pop("source", {}))
    return DatabaseMigrationSpec.model_validate({"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                                                 "source": {"command": source}, "preChecks": {"enabled": False},
                                                 **extra})


def log(text: str | None) -> PlanLog:
    return PlanLog(text, config_map=CONFIG_MAP)


def observe(plan: JobOutcome = MISSING, plan_log: PlanLog | None = None, confirm: JobOutcome = MISSING,
            confirm_log: PlanLog | None = None, command: JobOutcome = MISSING) -> m.MigrationObserved:
    return m.MigrationObserved(
        REVISION, m.MigrationJobs(MISSING, MISSING, command, NAMES), ChildState("pre"), ChildState("rb"), None, "app",
        command_plan=CommandPlanObserved("m-plan-1", "m-plan-confirm-1", plan, plan_log, confirm, confirm_log))


def run(s: DatabaseMigrationSpec, status: DatabaseMigrationStatus, observed: m.MigrationObserved) -> Any:
    return m.reconcile_migration(s, status, observed, generation=1, now=NOW)


SUCCEEDED = plan_outcome(DONE)


def test_the_plan_runs_first_and_manual_approval_covers_its_hash_then_it_is_confirmed() -> None:
    s = spec(approval={"mode": "Manual"})
    decision = run(s, DatabaseMigrationStatus(), observe())
    assert [(j.role, j.name) for j in decision.jobs] == [("plan", "m-plan-1")] and decision.status.phase == "Planning"
    assert any(e.reason == "PlanStarted" for e in decision.events)
    decision = run(s, decision.status, observe(SUCCEEDED, log(PLAN)))
    plan = decision.status.plan
    assert plan is not None and plan.command is not None and decision.jobs == []
    assert plan.pending == ["mentorship.0001_initial", "mentorship.0002_booking_status"]
    assert plan.command.operations == 3 and plan.command.excerpt == PLAN.rstrip("\n")
    assert plan.command.command == [*DJANGO, "--plan"] and plan.command.config_map == ""
    assert plan.hash == command_plan.plan_hash(REVISION, PLAN) and decision.create == []  # short: no ConfigMap
    assert decision.status.phase == "AwaitingApproval" and plan.hash in decision.status.message
    assert "django's plan: 2 migrations (3 operations)" in decision.status.message

    approved = spec(approval={"mode": "Manual", "approvedPlanHash": plan.hash})
    decision = run(approved, decision.status, observe(SUCCEEDED))  # the plan's log is not needed again
    assert [(j.role, j.name) for j in decision.jobs] == [("plan", "m-plan-confirm-1")]
    assert decision.status.phase == "Migrating" and "approved plan" in decision.status.message
    decision = run(approved, decision.status, observe(SUCCEEDED, confirm=SUCCEEDED, confirm_log=log(PLAN)))
    assert [j.role for j in decision.jobs] == ["command"]
    assert decision.status.plan is not None and decision.status.plan.command is not None
    assert decision.status.plan.command.confirmed
    decision = run(approved, decision.status, observe(SUCCEEDED, command=JobOutcome("Running")))
    assert decision.jobs == [] and decision.status.phase == "Migrating"  # confirmed once, not re-planned


def test_a_plan_that_changed_after_approval_is_refused_and_the_command_never_runs() -> None:
    status = run(spec(approval={"mode": "Manual"}), DatabaseMigrationStatus(),
                 observe(SUCCEEDED, log(PLAN))).status
    approved_hash = status.plan.hash  # type: ignore[union-attr]
    approved = spec(approval={"mode": "Manual", "approvedPlanHash": approved_hash})
    decision = run(approved, status, observe(SUCCEEDED, confirm=SUCCEEDED, confirm_log=log(LATER_PLAN)))
    assert decision.jobs == [] and decision.status.phase == "Failed"
    ready = decision.status.condition("Ready")
    assert ready is not None and ready.reason == "PlanChanged"
    assert command_plan.plan_hash(REVISION, LATER_PLAN) in ready.message and approved_hash in ready.message
    assert "no longer planned: mentorship.0001_initial; now django's plan: 1 migrations" in ready.message
    assert "m-plan-confirm-1" in ready.message and "the command was not run" in ready.message
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "MigrationFailed")]


def test_automatic_approval_runs_the_command_after_the_plan_without_confirming() -> None:
    decision = run(spec(), DatabaseMigrationStatus(), observe(SUCCEEDED, log(PLAN)))
    assert [(j.role, j.name) for j in decision.jobs] == [("command", "m-command-1")]
    assert decision.status.plan is not None and decision.status.plan.pending


def test_nothing_to_apply_succeeds_without_the_command() -> None:
    decision = run(spec(approval={"mode": "Manual"}), DatabaseMigrationStatus(), observe(SUCCEEDED, log(NOTHING)))
    assert decision.jobs == [] and decision.status.phase == "Succeeded"
    assert "nothing to apply" in decision.status.message and "the command was not run" in decision.status.message
    assert decision.status.plan is not None and decision.status.plan.command is not None
    assert decision.status.plan.command.operations == 0
    assert [e.reason for e in decision.events] == ["MigrationSucceeded"]


def test_output_not_recognised_is_never_nothing_to_apply() -> None:
    custom = spec(["/app/bin/migrate-all"], source={"planCommand": ["/app/bin/migrate-all", "--dry-run"]})
    decision = run(custom, DatabaseMigrationStatus(), observe(SUCCEEDED, log("")))
    assert [j.role for j in decision.jobs] == ["command"]
    assert decision.status.plan is not None and decision.status.plan.command is not None
    assert decision.status.plan.command.operations is None and "not recognised" in decision.status.plan.command.note


def test_a_long_plan_writes_its_config_map() -> None:
    long = "Planned operations:\n" + "".join(f"app.{n:04d}_s\n    Add field f to t\n" for n in range(50))
    decision = run(spec(), DatabaseMigrationStatus(), observe(SUCCEEDED, log(long)))
    assert decision.create == [CONFIG_MAP]
    assert decision.status.plan is not None and decision.status.plan.command is not None
    assert decision.status.plan.command.config_map == "m-command-plan-1"


def test_a_failing_plan_fails_naming_the_command_with_its_output() -> None:
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {
        "exitCode": 1, "finishedAt": "2026-11-30T02:00:00Z",
        "message": "CommandError: No installed app with label 'no_such_app'.\nat postgresql://u:pw@db/app"}}}]}}
    decision = run(spec([*DJANGO[:3], "no_such_app"]), DatabaseMigrationStatus(),
                   observe(plan_outcome(FAILED, [pod])))
    assert decision.jobs == [] and decision.status.phase == "Failed"
    ready = decision.status.condition("Ready")
    assert ready is not None and ready.reason == "PlanFailed"
    assert "`python manage.py migrate no_such_app --plan` (Job m-plan-1) exited with code 1" in ready.message
    assert "No installed app with label 'no_such_app'" in ready.message and ":pw@" not in ready.message
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "MigrationFailed")]


def test_a_plan_whose_log_is_gone_fails_clearly() -> None:
    decision = run(spec(), DatabaseMigrationStatus(), observe(SUCCEEDED, log(None)))
    ready = decision.status.condition("Ready")
    assert decision.status.phase == "Failed" and ready is not None and ready.reason == "PlanUnavailable"
    assert "m-plan-1" in ready.message


def test_required_plan_for_an_unknown_framework_is_an_invalid_spec() -> None:
    decision = run(spec(["./bin/rails", "db:migrate"], source={"plan": "Required"}), DatabaseMigrationStatus(),
                   observe())
    ready = decision.status.condition("Ready")
    assert decision.jobs == [] and ready is not None and ready.reason == "InvalidSpec"
    assert "./bin/rails db:migrate" in ready.message and "planCommand" in ready.message
    auto = run(spec(["./bin/rails", "db:migrate"], approval={"mode": "Manual"}), DatabaseMigrationStatus(), observe())
    assert auto.jobs == [] and auto.status.phase == "AwaitingApproval"  # no plan known: approval of the spec hash
    assert auto.status.plan is not None and auto.status.plan.hash == REVISION and auto.status.plan.command is None


def test_alembic_plan_is_parsed_and_its_revisions_pending() -> None:
    history = "ae1027a6acf -> 1975ea83b712 (head), create account\n3b2c -> ae1027a6acf (current), init\n"
    decision = run(spec(["alembic", "upgrade", "head"], approval={"mode": "Manual"}), DatabaseMigrationStatus(),
                   observe(SUCCEEDED, log(history)))
    plan = decision.status.plan
    assert plan is not None and plan.command is not None and plan.pending == ["1975ea83b712"]
    assert plan.command.command == ["alembic", "history", "--indicate-current", "-r", "current:head"]
    assert "alembic's plan: 1 revisions" in decision.status.message


def test_a_plan_pod_that_cannot_pull_its_image_fails_naming_the_image() -> None:
    waiting = {"metadata": {"creationTimestamp": "2026-11-30T01:55:00Z"},
               "spec": {"containers": [{"name": "runner", "image": "app:1.4-typo"}]},
               "status": {"phase": "Pending", "containerStatuses": [{"name": "runner", "state": {"waiting": {
                   "reason": "ImagePullBackOff", "message": 'Back-off pulling image "app:1.4-typo"'}}}]}}
    running = {"status": {"active": 1}}
    creating = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    assert with_start_problem(plan_outcome(running), "m-plan-1", [creating], now=NOW).state == "Running"
    outcome = with_start_problem(plan_outcome(running), "m-plan-1", [waiting], now=NOW, grace=120)
    decision = run(spec(), DatabaseMigrationStatus(source_hash=REVISION, phase="Planning"), observe(outcome))
    ready = decision.status.condition("Ready")
    assert decision.status.phase == "Failed" and ready is not None and ready.reason == "PlanFailed"
    assert 'cannot start: ImagePullBackOff: Back-off pulling image "app:1.4-typo"' in ready.message
    assert "(image app:1.4-typo)" in ready.message
    assert decision.jobs == [] and [e.type for e in decision.events] == ["Warning"]
    assert decision.delete == [{"apiVersion": "batch/v1", "kind": "Job", "name": "m-plan-1"}]
