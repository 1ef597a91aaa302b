"""The smoke-test step of a DatabaseMigration (spec.verify.jobs): start the Jobs together, wait, judge.

A test's Job runs the user's image, so its outcome is its exit code and output tail (as for a
framework command), or the Job's deadline (the test's timeout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec, MigrationPhase
from dbops.api.migration_verify import SmokeTestResult
from dbops.api.roles import JobRole
from dbops.reconcile.actions import JobRequest
from dbops.reconcile.command import failed_condition, failure_message
from dbops.reconcile.jobs import JobOutcome, job_state
from dbops.reconcile.pod_start import START_FAILURES
from dbops.reconcile.steps import Steps


@dataclass(frozen=True)
class SmokeVerdict:
    """Whether the smoke tests are still running, all passed, or which failed."""

    pending: bool
    failure: str = ""
    results: tuple[SmokeTestResult, ...] = ()


def smoke_outcome(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()) -> JobOutcome:
    """Succeeded on exit 0; else Failed with the exit code and output tail, or the deadline that stopped it."""
    state = job_state(job)
    if job is None or state in ("Missing", "Running"):
        return JobOutcome(state)
    if state == "Succeeded":
        return JobOutcome(state, {}, "Succeeded", "passed")
    failed = failed_condition(job)
    if failed.get("reason") == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return JobOutcome("Failed", {}, "SmokeTestFailed", f"timed out after {deadline}s")
    return JobOutcome("Failed", {}, "SmokeTestFailed", failure_message(failed, pods))


def smoke_step(steps: Steps[MigrationPhase], spec: DatabaseMigrationSpec, names: Sequence[str],
               outcomes: Sequence[JobOutcome]) -> SmokeVerdict:
    """Start every missing smoke Job (they run side by side); pending until all finished; the first failure."""
    results = []
    pending = False
    for test, name, outcome in zip(spec.verify.jobs, names, outcomes, strict=True):
        shown = ", ".join(test.name for test in spec.verify.jobs)
        if steps.job_pending(outcome, JobRequest(JobRole.SMOKE, name), phase="Verifying",
                             message=f"running smoke tests {shown}", started="SmokeTestStarted"):
            pending = True
        state = outcome.state if outcome.finished else "Running"
        results.append(SmokeTestResult(name=test.name, job_name=name, state=state, message=outcome.message))
    if pending and not any(o.state == "Failed" and o.reason in START_FAILURES for o in outcomes):
        # a test whose pod cannot start fails now (its Job is deleted): waiting for the others would restart it
        return SmokeVerdict(True, results=tuple(results))
    failed = [result for result in results if result.state == "Failed"]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return SmokeVerdict(False, f"smoke test {first.name} (Job {first.job_name}) {first.message}{more}",
                            tuple(results))
    return SmokeVerdict(False, results=tuple(results))
