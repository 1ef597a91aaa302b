"""Command mode's plan steps: run the framework's plan before approval, and confirm it before the command runs.

Order: window → plan (Job in the user's image) → [nothing to apply: Succeeded] → approval of ``plan.hash`` →
run lock → pre-checks → pre-backup → [Manual approval: confirm] → command → verify.

Why the operator re-plans (a second plan Job, "confirm") instead of the command Job checking for itself: the
command runs in the user's image, where we cannot add a check without a shell or our code, and the command
Job's init container is our image, which cannot run the framework. The confirm Job runs after the pre-checks
and the pre-backup, right before the command, while this run holds the database's run lock (no other dbops
run can move the database in between); only a change made outside dbops in the seconds between the two Jobs
can escape it. A confirmation that differs from the approved plan fails the run with PlanChanged and the
command never starts.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbops.api.framework_detect import detect
from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus, MigrationPhase
from dbops.api.migration_command_plan import default_plan_command
from dbops.api.roles import JobRole
from dbops.reconcile import command_plan
from dbops.reconcile.actions import JobRequest
from dbops.reconcile.command import failed_condition, failure_message
from dbops.reconcile.command_plan import PlanLog
from dbops.reconcile.jobs import MISSING, JobOutcome, job_state
from dbops.reconcile.steps import Steps
from dbops.redaction import redact


@dataclass(frozen=True)
class CommandPlanObserved:
    """The plan and confirm Jobs of the current run and, once they finished, their logs."""

    plan_name: str
    confirm_name: str
    plan: JobOutcome = MISSING
    plan_log: PlanLog | None = None
    confirm: JobOutcome = MISSING
    confirm_log: PlanLog | None = None


def plan_command(spec: DatabaseMigrationSpec) -> list[str] | None:
    """The plan command of a command source: planCommand, else the framework's default; None: no plan step."""
    source = spec.source.command
    if source is None or source.plan == "Disabled":
        return None
    return list(source.plan_command) or default_plan_command(source.command)


def plan_outcome(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()) -> JobOutcome:
    """A plan Job's outcome: Succeeded on exit 0, else PlanFailed with its exit code and output tail (a pod that
    cannot start is pod_start's business)."""
    state = job_state(job)
    if job is None or state in ("Missing", "Running"):
        return JobOutcome(state)
    if state == "Succeeded":
        return JobOutcome(state, {}, "Succeeded", "the plan command succeeded")
    return JobOutcome("Failed", {}, "PlanFailed", failure_message(failed_condition(job), pods))


def _shown(argv: Sequence[str]) -> str:
    text = redact(shlex.join(argv))
    return text if len(text) <= 200 else text[:199] + "…"


def _difference(approved: Sequence[str], fresh: Sequence[str], shown: int = 5) -> str:
    """``no longer planned: a.1; newly planned: b.2`` (or that the same migrations now plan differently)."""
    def listed(items: list[str]) -> str:
        return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")

    gone = [item for item in approved if item not in set(fresh)]
    new = [item for item in fresh if item not in set(approved)]
    parts = [f"no longer planned: {listed(gone)}"] if gone else []
    parts += [f"newly planned: {listed(new)}"] if new else []
    return "; ".join(parts) or "the same migrations, with other output"


class CommandPlanSteps:
    """The plan and confirm steps of one reconcile (see the module docstring)."""

    def __init__(self, spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus,
                 observed: CommandPlanObserved | None, steps: Steps[MigrationPhase], revision: str) -> None:
        self.spec, self.status, self.observed, self.steps, self.revision = spec, status, observed, steps, revision
        self.argv = plan_command(spec)

    def planned(self) -> bool:
        """True once the plan is in status.plan (or no plan is asked for); ends the run when nothing is to apply."""
        source = self.spec.source.command
        assert source is not None
        if self.argv is None:
            if source.plan == "Required":
                self.steps.fail("InvalidSpec", f"source.command.plan is Required, but no plan command is known for "
                                f"`{_shown(source.command)}` (defaults exist for Django's manage.py migrate and "
                                "Alembic's upgrade <target>): set source.command.planCommand", "InvalidSpec")
                return False
            return True
        if self.status.plan is not None and self.status.plan.command is not None:
            return True
        observed = self._observed()
        if observed is None:
            return False
        text = self._finished_log(observed.plan, observed.plan_name, observed.plan_log, "Planning",
                                  "running the framework's plan command", "PlanStarted")
        if text is None:
            return False
        log = observed.plan_log
        assert log is not None
        plan = command_plan.plan_from_log(log, framework=detect(self.argv), command=[redact(a) for a in self.argv],
                                          revision=self.revision)
        self.status.plan = plan
        if plan.command is not None and plan.command.config_map:
            self.steps.decision.create.append(dict(log.config_map))
        if command_plan.nothing_to_apply(plan):
            framework = plan.command.framework if plan.command else ""
            self.steps.succeed(f"nothing to apply: {framework}'s plan (`{_shown(self.argv)}`) lists no "
                               "migrations; the command was not run", "MigrationSucceeded")
            return False
        return True

    def confirmed(self) -> bool:
        """With manual approval: True once a fresh plan equals the approved one (else PlanChanged)."""
        plan = self.status.plan
        if self.spec.approval.mode != "Manual" or self.argv is None or plan is None or plan.command is None \
                or plan.command.confirmed:
            return True
        observed = self._observed()
        if observed is None:
            return False
        text = self._finished_log(observed.confirm, observed.confirm_name, observed.confirm_log, "Migrating",
                                  "re-running the framework's plan: the command runs only if it is the approved plan",
                                  "PlanConfirmStarted")
        if text is None:
            return False
        log = observed.confirm_log
        assert log is not None
        fresh = command_plan.plan_from_log(log, framework=detect(self.argv), command=plan.command.command,
                                           revision=self.revision)
        if fresh.hash == plan.hash:
            plan.command.confirmed = True
            return True
        self.steps.fail("PlanChanged", f"the framework's plan changed since it was approved; the command was not "
                        f"run: {_difference(plan.pending, fresh.pending)}; now {command_plan.summary(fresh)} (hash "
                        f"{fresh.hash}), approved {command_plan.summary(plan)} (hash {plan.hash}). Review the new "
                        f"plan (log of Job {observed.confirm_name}); to run it, set annotation dbops.io/retry to a new value "
                        "(the plan is made again and needs approving: its hash in spec.approval.approvedPlanHash)",
                        "MigrationFailed")
        return False

    def _observed(self) -> CommandPlanObserved | None:
        if self.observed is None:  # never skip a plan that was asked for
            self.steps.fail("InternalError", "the plan Jobs were not observed", "MigrationFailed")
        return self.observed

    def _finished_log(self, job: JobOutcome, name: str, log: PlanLog | None, phase: MigrationPhase, message: str,
                      started: str) -> str | None:
        """The finished Job's log text; None while it runs, or after failing the run."""
        if self.steps.job_pending(job, JobRequest(JobRole.PLAN, name), phase=phase, message=message, started=started):
            return None
        if job.state == "Failed":
            self.steps.fail("PlanFailed", f"the plan command `{_shown(self.argv or [])}` (Job {name}) {job.message}",
                            "MigrationFailed")
            return None
        if log is None or log.text is None:
            self.steps.fail("PlanUnavailable", f"the plan Job {name} succeeded but its log could not be read (its pod "
                            "is gone?); the plan cannot be shown or approved: start a new run", "MigrationFailed")
            return None
        return log.text
