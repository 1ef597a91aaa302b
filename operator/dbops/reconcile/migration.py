"""Decisions for a DatabaseMigration: window, plan, approval, pre-checks, pre-backup, apply, rollback.

With ``spec.rehearsal`` the plan is rehearsed on a restored copy first (``dbops.reconcile.migration_rehearsal``).

Command mode (``source.command``): window → the framework's plan (``dbops.reconcile.command_plan_steps``) →
approval of its hash (without a plan: of the spec hash, status.sourceHash) → pre-checks → pre-backup → [Manual:
the plan confirmed] → the framework command Job → the verify-db Job; no dry run (frameworks have their own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dbops.api.migration import (
    AppliedMigration,
    CheckResult,
    DatabaseMigrationSpec,
    DatabaseMigrationStatus,
    MigrationPhase,
    VerificationResult,
)
from dbops.api.migration_framework import FrameworkHistory
from dbops.api.migration_plan import MigrationPlan
from dbops.api.roles import JobRole
from dbops.api.status import RETRY_ANNOTATION
from dbops.reconcile import migration_children, migration_runs, plan_report, results, retry, smoke
from dbops.reconcile.actions import ApplyParams, ChildRequest, Decision, JobParams, JobRequest, NoParams
from dbops.reconcile.children import ChildState
from dbops.reconcile.command_plan import summary as command_plan_summary
from dbops.reconcile.command_plan_steps import CommandPlanObserved, CommandPlanSteps
from dbops.reconcile.jobs import MISSING, JobOutcome
from dbops.reconcile.migration_rehearsal import RehearsalObserved, rehearsal_summary, rehearsed, uses_pre_backup
from dbops.reconcile.plan_report import PlanReportObserved
from dbops.reconcile.runlock import RunLock
from dbops.reconcile.steps import WAIT_SECONDS, Steps
from dbops.reconcile.window import WindowState

MAX_WINDOW_WAIT_SECONDS = 300.0
IDLE_PHASES = migration_runs.IDLE_PHASES


@dataclass(frozen=True)
class MigrationJobs:
    """The observed Jobs of the current run and their deterministic names."""

    plan: JobOutcome
    check: JobOutcome
    apply: JobOutcome
    """The apply Job, or in command mode the framework command Job."""
    names: dict[JobRole, str]
    verify: JobOutcome = MISSING
    """The verify-db Job (command mode only)."""
    smoke: tuple[JobOutcome, ...] = ()
    """The smoke-test Jobs (spec.verify.jobs), in spec order."""
    smoke_names: tuple[str, ...] = ()
    """Their names."""


@dataclass(frozen=True)
class MigrationObserved:
    """What the controller read for one DatabaseMigration."""

    revision: str
    """Hash of the migration content and the spec (without approval): a change starts a new run."""
    jobs: MigrationJobs
    backup: ChildState
    restore: ChildState
    window: WindowState | None
    database_name: str = ""
    """Name of the database (for confirmOverwrite of the rollback restore), when known."""
    lock: RunLock | None = None
    """The run lock of the target database (command mode): held from the pre-checks to verify or rollback."""
    rehearsal: RehearsalObserved | None = None
    """The rehearsal Job and its source (spec.rehearsal.enabled, SQL sources)."""
    command_plan: CommandPlanObserved | None = None
    """The framework's plan and confirm Jobs and their logs (command mode)."""
    plan_report: PlanReportObserved | None = None
    """The complete plan report, once the plan Job finished (SQL sources)."""


def reconcile_migration(spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus, observed: MigrationObserved,
                        *, generation: int, now: datetime, token: str | None = None) -> Decision:
    """The next step of a migration run (``token``: its dbops.io/retry annotation)."""
    status = status.model_copy(deep=True)
    if migration_runs.new_revision(status, observed.revision):
        status = migration_runs.next_revision_run(status, observed.revision, token)
    elif status.is_terminal:
        retried = migration_runs.retry_migration(status, token, generation=generation, now=now)
        if retried is not None:
            return retried
    retry.begin(status, token)
    decision = Decision(status)
    if not status.is_terminal:
        if status.source_hash != observed.revision:
            decision.requeue_after = WAIT_SECONDS  # a run of the previous revision finishes first
        _Run(spec, status, observed, decision, generation, now).step()
    lock = observed.lock
    if lock is not None and lock.state == "Ours" and decision.status.is_terminal:
        decision.delete.append(lock.target)  # the run is over: the next run on this database may start
    return decision


class _Run:
    """One pass over the steps of a run; each step returns True when the next may start."""

    def __init__(self, spec: DatabaseMigrationSpec, status: DatabaseMigrationStatus, observed: MigrationObserved,
                 decision: Decision, generation: int, now: datetime) -> None:
        self.spec, self.status, self.observed, self.decision = spec, status, observed, decision
        self.generation, self.now = generation, now
        self.steps = Steps(status, decision, generation=generation, now=now)
        self.command_plan = CommandPlanSteps(spec, status, observed.command_plan, self.steps, observed.revision)

    def progress(self, phase: MigrationPhase, reason: str, message: str) -> None:
        self.steps.progress(phase, reason, message)

    def fail(self, reason: str, message: str, event: str = "MigrationFailed") -> None:
        self.steps.fail(reason, message, event)

    def job_pending(self, job: JobOutcome, role: JobRole, phase: MigrationPhase, message: str,
                    params: JobParams | None = None) -> bool:
        """The shared Job step for the run's Job of this role; True until it has finished."""
        request = JobRequest(role, self.observed.jobs.names[role], params or NoParams())
        return self.steps.job_pending(job, request, phase=phase, message=message)

    def step(self) -> None:
        command_mode = self.spec.source.command is not None
        if command_mode and self.spec.dry_run:
            self.fail("InvalidSpec", "dryRun is not supported with source.command: use the framework's own dry-run "
                      "option (e.g. `manage.py migrate --plan`) in the command", event="InvalidSpec")
            return
        if command_mode and self.spec.rehearsal.enabled:
            self.fail("InvalidSpec", "rehearsal is not supported with source.command", event="InvalidSpec")
            return
        started = self.status.phase not in IDLE_PHASES
        if not started and not self.window_open():
            return
        if command_mode:
            if not self.command_plan.planned():
                return
            if self.approved() and self.locked() and self.checked() and self.backed_up() \
                    and self.command_plan.confirmed():
                self.command_applied()
            return
        if not self.planned() or not self.rehearsal_done():
            return
        if not self.approved() or not self.checked() or not self.backed_up():
            return
        self.applied()

    def rehearsal_done(self) -> bool:
        """No rehearsal asked, or it passed (after the pre-checks and pre-backup when it restores the latter)."""
        observed = self.observed.rehearsal
        if not self.spec.rehearsal.enabled:
            return True
        if observed is None:  # never skip a rehearsal that was asked for
            self.fail("InternalError", "the rehearsal's Job and backup were not observed")
            return False
        if uses_pre_backup(self.spec) and not (self.checked() and self.backed_up()):
            return False
        return rehearsed(self.spec, self.status, observed, self.steps)

    def window_open(self) -> bool:
        window = self.observed.window
        if window is None or window.open:
            self.status.next_window = None
            return True
        self.status.next_window = window.next_start.isoformat()
        self.progress("Waiting", "WaitingForWindow", f"waiting for the maintenance window at {window.next_start.isoformat()}")
        self.decision.requeue_after = min(MAX_WINDOW_WAIT_SECONDS,
                                          max(1.0, (window.next_start - self.now).total_seconds()))
        return False

    def done_before(self, job: JobOutcome, role: JobRole, phase: MigrationPhase) -> bool:
        """The step of this Job finished in an earlier pass and its Job is gone since (its result is in status)."""
        return self.steps.read_before(job, self.observed.jobs.names[role], phase)

    def planned(self) -> bool:
        plan = self.observed.jobs.plan
        if self.status.plan is not None and self.done_before(plan, JobRole.PLAN, "Planning"):
            return True
        if self.job_pending(plan, JobRole.PLAN, "Planning", "planning the migration"):
            return False
        version = plan.result.get("currentVersion")
        # The capped lists, and where the complete report is (a failed lint shows every finding too).
        previous = self.status.plan
        self.status.plan = plan_report.plan_status(plan.result.get("plan"), self.observed.plan_report, previous,
                                                   self.decision)
        if plan.state == "Failed":
            if isinstance(version, str | int):  # where the database is, also when the plan was refused (drift …)
                self.status.current_version = str(version)
            self.fail(plan.reason, plan.message)
            return False
        if isinstance(version, str | int) and not self.status.current_version:
            self.status.current_version = str(version)
        if self.status.plan is not None and not self.status.plan.pending:
            at = f"version {self.status.current_version}" if self.status.current_version else "no version"
            message = f"up to date at {at}"
            if self.status.mark_succeeded(message, generation=self.generation, now=self.now):
                self.decision.event("Normal", "MigrationSucceeded", message)
            return False
        return True

    def approved(self) -> bool:
        command_plan = self.status.plan is not None and self.status.plan.command is not None
        if self.spec.source.command is not None and not command_plan:
            self.status.plan = MigrationPlan(hash=self.status.source_hash)  # no plan step: approve the spec hash
        if self.spec.approval.mode != "Manual":
            return True
        plan_hash = self.status.plan.hash if self.status.plan else ""
        if plan_hash and self.spec.approval.approved_plan_hash == plan_hash:
            return True
        what = "this plan"
        if self.spec.source.command is not None and self.status.plan is not None:
            what = (f"{command_plan_summary(self.status.plan)} of this command (image, command and env; status.plan "
                    "shows it)" if command_plan else "this command (image, command and env)")
        rehearsal, pending = self.status.rehearsal, self.status.plan.pending_count if self.status.plan else 0
        if rehearsal is not None and rehearsal.outcome == "Passed":
            what += f" ({rehearsal_summary(rehearsal, pending)})"
        self.progress("AwaitingApproval", "AwaitingApproval",
                      f"set spec.approval.approvedPlanHash to {plan_hash} to approve {what}")
        return False

    def locked(self) -> bool:
        """Hold the database's run lock (a Lease) before the first Job; wait while another run holds it."""
        lock = self.observed.lock
        if lock is None or lock.state == "Ours":
            return True
        if lock.state == "Held":
            message = (f"waiting for {lock.holder} ({lock.holder_phase or 'starting'}), which holds the run lock on "
                       f"this database (Lease {lock.name})")
            if self.status.message != message:
                self.decision.event("Normal", "WaitingForLock", message)
            self.progress("Waiting", "WaitingForLock", message)
            self.decision.requeue_after = WAIT_SECONDS
            return False
        if lock.state == "Stale":
            self.decision.delete.append(lock.target)
            message = f"taking over run lock {lock.name} left by {lock.holder} ({lock.holder_phase or 'gone'})"
        else:
            assert lock.manifest is not None
            self.decision.create.append(dict(lock.manifest))
            message = f"taking the run lock on this database (Lease {lock.name})"
        self.progress("Pending", "AcquiringLock", message)
        self.decision.requeue_after = 1.0
        return False

    def checked(self) -> bool:
        if not self.spec.pre_checks.enabled:
            return True
        check = self.observed.jobs.check
        if self.done_before(check, JobRole.CHECK, "Checking"):
            return True
        if self.job_pending(check, JobRole.CHECK, "Checking", "running pre-migration checks"):
            return False
        self.status.pre_checks = results.models_from_result(CheckResult, check.result.get("preChecks"))
        if check.state == "Failed":
            self.fail("PreChecksFailed" if check.reason in ("", "JobFailed", "VerificationFailed") else check.reason,
                      check.message)
            return False
        return True

    def backed_up(self) -> bool:
        if not self.spec.backup.enabled:
            return True
        child = self.observed.backup
        self.status.backup_name = child.name
        request = ChildRequest("DatabaseBackup", child.name, migration_children.pre_backup_spec(self.spec), owned=False)
        if self.steps.child_pending(child, request, phase="BackingUp",
                                    message=f"taking pre-migration backup {child.name}", started="BackupStarted"):
            return False
        if child.phase == "Succeeded":
            return True
        self.fail("BackupFailed", f"pre-migration backup {child.name} failed: {child.message}")
        return False

    def applied(self) -> None:
        apply = self.observed.jobs.apply
        if self.status.phase == "RollingBack":
            self.rolled_back()
            return
        # The apply must meet the plan that was approved or rehearsed again (the database may have moved since).
        pinned = self.spec.approval.mode == "Manual" or self.spec.rehearsal.enabled
        plan_hash = self.status.plan.hash if self.status.plan and pinned else ""
        if self.done_before(apply, JobRole.APPLY, "Migrating"):  # it succeeded (a failure ends or rolls back)
            self.smoke_tested_and_done()
            return
        if self.job_pending(apply, JobRole.APPLY, "Migrating", "applying migrations",
                            ApplyParams(plan_hash)):
            return
        result = apply.result
        self.status.applied = results.models_from_result(AppliedMigration, result.get("applied"))
        self.status.verification = results.models_from_result(VerificationResult, result.get("verification"))
        self.status.sizes = results.size_changes(result.get("sizes"))
        self.status.dry_run = bool(result.get("dryRun"))
        imported = None if self.status.dry_run else results.imported_history(result)  # committed even if it failed
        if imported is not None and self.status.imported_history is None:
            self.decision.event("Normal", "HistoryImported", imported.summary())
        self.status.imported_history = imported
        if apply.state == "Succeeded" and self.status.dry_run:
            # Nothing was committed: the versions stay the database's; the runner says what would happen.
            message = str(result.get("message") or f"dry run: {len(self.status.applied)} migrations ran in a "
                                                      "rolled-back transaction")
            if self.status.mark_succeeded(message, generation=self.generation, now=self.now):
                self.decision.event("Normal", "DryRunSucceeded", message)
            return
        for key, attribute in (("previousVersion", "previous_version"), ("currentVersion", "current_version")):
            # A succeeded run's versions are exact (null: no version, e.g. after rolling back to 0); a failed
            # run may not have read them (null: unknown).
            if key in result and (apply.state == "Succeeded" or result[key] is not None):
                setattr(self.status, attribute, str(result[key] or ""))
        if apply.state == "Succeeded":
            self.smoke_tested_and_done()
            return
        self.failed_run(apply.reason, apply.message)

    def smoke_tested_and_done(self) -> None:
        """After a successful apply: the smoke tests, then Succeeded."""
        if not self.smoke_tested():
            return
        down = any(a.direction == "down" for a in self.status.applied)
        message = (f"{'rolled back' if down else 'applied'} {len(self.status.applied)} migrations; now at "
                   f"{f'version {self.status.current_version}' if self.status.current_version else 'no version'}")
        if self.status.imported_history is not None:
            message = f"{self.status.imported_history.summary()}; {message}"
        if self.status.mark_succeeded(message, generation=self.generation, now=self.now):
            self.decision.event("Normal", "MigrationSucceeded", message)

    def failed_run(self, reason: str, message: str) -> None:
        """A failed apply (or command, or verification): roll back when asked and possible, else fail."""
        if reason == "PlanChanged":  # the database moved since the approval: a new run plans it again
            message = f"{message}; to plan again, set annotation {RETRY_ANNOTATION} to a new value"
        if self.spec.on_failure == "RestoreBackup" and self.spec.backup.enabled and self.observed.backup.phase == "Succeeded":
            self.status.message = f"{reason}: {message}"
            self.decision.event("Warning", "MigrationFailed", f"{reason}: {message}; rolling back")
            self.rolled_back(failure=f"{reason}: {message}")
            return
        self.fail(reason, message)

    def command_applied(self) -> None:
        """Command mode: the framework command Job, then the verify-db Job."""
        if self.status.phase == "RollingBack":
            self.rolled_back()
            return
        command, verify = self.observed.jobs.apply, self.observed.jobs.verify
        if self.done_before(command, JobRole.COMMAND, "Migrating"):
            pass  # it succeeded in an earlier pass (a failure ends or rolls back the run)
        elif self.job_pending(command, JobRole.COMMAND, "Migrating", "running the migration command"):
            return
        elif command.state == "Failed":
            self.failed_run(command.reason or "MigrationFailed", command.message)
            return
        if self.job_pending(verify, JobRole.VERIFY, "Verifying", "verifying the database after the migration command"):
            return
        self.status.verification = results.models_from_result(VerificationResult, verify.result.get("verification"))
        self.status.sizes = results.size_changes(verify.result.get("sizes"))
        self.status.framework_history = results.models_from_result(FrameworkHistory,
                                                                   verify.result.get("frameworkHistory"))
        if verify.state == "Succeeded":
            if not self.smoke_tested():
                return
            ran = "; ".join(part for history in self.status.framework_history if (part := history.summary()))
            message = (f"migration command succeeded{f' ({ran})' if ran else ''}; "
                       f"{len(self.status.verification)} verifications passed")
            if self.status.mark_succeeded(message, generation=self.generation, now=self.now):
                self.decision.event("Normal", "MigrationSucceeded", message)
            return
        reason = verify.reason if verify.reason not in ("", "JobFailed") else "VerificationFailed"
        self.failed_run(reason, verify.message)

    def smoke_tested(self) -> bool:
        """The smoke tests after a successful migration: True once all passed (or there are none)."""
        if not self.spec.verify.jobs:
            return True
        jobs = self.observed.jobs
        verdict = smoke.smoke_step(self.steps, self.spec, jobs.smoke_names, jobs.smoke)
        self.status.smoke_tests = list(verdict.results)
        if verdict.failure:
            self.failed_run("SmokeTestFailed", verdict.failure)
        return not verdict.pending and not verdict.failure

    def rolled_back(self, failure: str = "") -> None:
        child = self.observed.restore
        self.status.restore_name = child.name
        spec = migration_children.rollback_restore_spec(self.spec, self.observed.backup.name, self.observed.database_name)
        message = (f"migration failed ({failure}); restoring pre-migration backup {self.observed.backup.name}"
                   if failure else self.status.message)
        if self.steps.child_pending(child, ChildRequest("DatabaseRestore", child.name, spec), phase="RollingBack",
                                    message=message):
            return
        if child.phase == "Succeeded":
            message = f"migration failed; database restored from {self.observed.backup.name} ({self.status.message})"
            self.status.mark_failed("RolledBack", message, generation=self.generation, now=self.now)
            self.status.phase = "RolledBack"
            self.decision.event("Warning", "MigrationRolledBack", message)
            return
        self.fail("RollbackFailed", f"restore {child.name} failed: {child.message}")

