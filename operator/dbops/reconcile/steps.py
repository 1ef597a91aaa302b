"""The steps every kind shares: start a Job or wait for it, create a child or wait for it, progress and failure."""

from __future__ import annotations

from datetime import datetime
from typing import Generic

from dbops.api.roles import REPEATABLE_ROLES, JobRole
from dbops.api.status import JobStatus, PhaseT
from dbops.reconcile.actions import ChildRequest, Decision, JobRequest
from dbops.reconcile.children import ChildState
from dbops.reconcile.jobs import VOLUME_NOT_READY, JobOutcome
from dbops.reconcile.pod_start import CONTAINER_CONFIG_ERROR, IMAGE_PULL_FAILED, POD_UNSCHEDULABLE, START_FAILURES

WAIT_SECONDS = 10.0
"""How soon to look again at a child, or a Job's pod that waits, whose progress sends the parent no event."""
JOB_LOST = "JobLost"
RETRY_HINTS = {
    JobRole.RESTORE: "it may have restored the target already and is not run twice: check the target database, "
                     "then set annotation dbops.io/retry to a new value to restore again (or delete and re-create "
                     "the DatabaseRestore)",
    JobRole.APPLY: "it may have applied migrations already and is not run twice: check the database's history "
                   "table (dbops migrate status), then set annotation dbops.io/retry to a new value to run it again "
                   "(plan, approval and pre-checks again; or delete and re-create the DatabaseMigration)",
    JobRole.COMMAND: "the framework command may have run already and is not run twice: check the database's "
                     "migration history, then set annotation dbops.io/retry to a new value to run it again (or "
                     "delete and re-create the DatabaseMigration)",
}

WAITS = {VOLUME_NOT_READY: "waits for its volume", IMAGE_PULL_FAILED: "cannot pull its image yet",
         CONTAINER_CONFIG_ERROR: "cannot be configured yet", POD_UNSCHEDULABLE: "cannot be scheduled yet"}
"""A running Job's reasons to show on the resource while its pod waits (and what the wait is)."""


class Steps(Generic[PhaseT]):
    """One reconcile's status and decision, and the steps that advance both the same way for every kind
    (typed by the kind's phases, so a step cannot enter a phase the kind does not have)."""

    def __init__(self, status: JobStatus[PhaseT], decision: Decision, *, generation: int, now: datetime) -> None:
        self.status, self.decision, self.generation, self.now = status, decision, generation, now

    def progress(self, phase: PhaseT, reason: str, message: str) -> None:
        """Show a non-terminal phase (only when the phase or message changed, so a re-check writes nothing)."""
        if self.status.phase != phase or self.status.message != message:
            self.status.mark_progressing(phase, reason, message, generation=self.generation, now=self.now)

    def fail(self, reason: str, message: str, event: str) -> None:
        """End in Failed with a reason and a Warning Event (once)."""
        if self.status.mark_failed(reason, message, generation=self.generation, now=self.now):
            self.decision.event("Warning", event, f"{reason}: {message}")

    def succeed(self, message: str, event: str) -> None:
        """End in Succeeded with a Normal Event (once)."""
        if self.status.mark_succeeded(message, generation=self.generation, now=self.now):
            self.decision.event("Normal", event, message)

    def job_pending(self, job: JobOutcome, request: JobRequest, *, phase: PhaseT, message: str,
                    started: str = "") -> bool:
        """Ask for the Job when it is missing (with a Normal Event ``started``, default ``<phase>Started``) and
        show ``phase`` while it runs; True until the Job has finished (the caller then reads its result).

        A Job recorded in ``status.startedJobs`` that is missing was lost before its result was read (deleted by
        hand or by a ttl): it starts again only when its role is repeatable; otherwise the resource fails
        ``JobLost`` and this stays True (nothing further happens)."""
        if job.state == "Missing" and self.status.started(request.name) is not None:
            if request.role not in REPEATABLE_ROLES:
                hint = RETRY_HINTS.get(request.role, "it is not run twice")
                self.fail(JOB_LOST, f"{request.role} Job {request.name} is gone before the operator read its "
                          f"result (deleted, or removed by ttlSecondsAfterFinished); {hint}", JOB_LOST)
                return True
            self.decision.event("Normal", "JobRestarted", f"{request.role} Job {request.name} is gone before its "
                                "result was read; starting it again (its work is safe to repeat)")
        if not self.decision.job_pending(job, request):
            if job.state == "Failed" and job.reason in START_FAILURES:
                # its pod never started: delete the Job, so no pod stays pending (and retrying) for nothing
                self.decision.delete.append({"apiVersion": "batch/v1", "kind": "Job", "name": request.name})
            return False
        self.status.record_started(request.name, str(request.role))
        if job.state == "Missing":
            self.decision.event("Normal", started or f"{phase}Started", f"created {request.role} Job {request.name}")
        self.status.job_name = request.name
        if job.reason in WAITS:  # shown on the resource, not only on the pod; looked at again soon
            ready = self.status.condition("Ready")
            if ready is None or ready.reason != job.reason:
                self.decision.event("Warning", job.reason, f"{request.role} Job {request.name}: {job.message}")
            self.progress(phase, job.reason, f"{message}; the Job's pod {WAITS[job.reason]}: {job.message}")
            self.decision.requeue_after = WAIT_SECONDS
            return True
        self.progress(phase, phase, message)
        return True

    def read_before(self, job: JobOutcome, name: str, phase: PhaseT) -> bool:
        """Whether the run moved past this Job's step (``phase``) in an earlier pass, which read its result into
        status, and the Job is gone since (deleted by hand): the step is done, neither repeated nor read again.

        A step that reads its Job's result moves the phase on in the same pass (a later step shows its own phase,
        or the resource ends), so a started Job missing while the phase is another one was read already."""
        return job.state == "Missing" and self.status.started(name) is not None and self.status.phase != phase

    def child_pending(self, child: ChildState, request: ChildRequest, *, phase: PhaseT, message: str,
                      started: str = "") -> bool:
        """Ask for the child when it is missing (with a Normal Event ``started``, when given) and show ``phase``
        while it works, looking again every WAIT_SECONDS; True until it reached a terminal phase."""
        if not self.decision.child_pending(child, request):
            return False
        if not child.exists:
            if started:
                self.decision.event("Normal", started, f"created {request.kind} {request.name}")
        else:
            self.decision.requeue_after = WAIT_SECONDS
        self.progress(phase, phase, message)
        return True
