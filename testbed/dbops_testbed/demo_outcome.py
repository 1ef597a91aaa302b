"""The demo's verdict: which resources did not end as expected, a closing table, and the phases' timings."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

# The one resource meant to fail: its migration breaks on production data and is rolled back by restore.
EXPECTED = {("DatabaseMigration", "mentorhub-schema-next"): {"RolledBack"}}
SETTLED = {"Succeeded", "Failed", "RolledBack", "Active", "Suspended"}


class DemoFailure(Exception):
    """A step of the demo that did not end as expected (the table and the verdict still get printed)."""


def expected_phases(kind: str, name: str) -> set[str]:
    """What a resource must end in for the demo to count as having worked."""
    if kind == "DatabaseBackupSchedule":
        return {"Active"}
    return EXPECTED.get((kind, name), {"Succeeded"})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _ready(item: dict[str, Any]) -> dict[str, Any]:
    conditions = (item.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def took(item: dict[str, Any]) -> str:
    """Seconds from the resource's creation to its completion (what a user waits), '-' while unfinished."""
    created = _time(item["metadata"].get("creationTimestamp"))
    completed = _time((item.get("status") or {}).get("completedAt"))
    return f"{(completed - created).total_seconds():.0f}s" if created and completed else "-"


def failures(items: list[dict[str, Any]]) -> list[str]:
    """One line per resource that did not end as expected: kind/name, phase, reason, message."""
    lines = []
    for item in items:
        kind, name = item["kind"], item["metadata"]["name"]
        status = item.get("status") or {}
        phase = str(status.get("phase") or "Pending")
        if phase in expected_phases(kind, name):
            continue
        ready = _ready(item)
        message = str(status.get("message") or ready.get("message") or "")
        if phase not in SETTLED:
            lines.append(f"{kind}/{name}: still {phase} when the demo stopped: {message or '-'}")
            continue
        lines.append(f"{kind}/{name}: phase {phase} (expected {' or '.join(sorted(expected_phases(kind, name)))}), "
                     f"reason {ready.get('reason') or '-'}: {message or '-'}")
    return lines


def summary_table(items: list[dict[str, Any]]) -> list[str]:
    """Every resource with its phase, how long it took and whether that is what the demo expects."""
    rows = [("RESOURCE", "PHASE", "TOOK", "OK")]
    for item in sorted(items, key=lambda i: (i["metadata"].get("creationTimestamp") or "", i["metadata"]["name"])):
        kind, name = item["kind"], item["metadata"]["name"]
        phase = str((item.get("status") or {}).get("phase") or "Pending")
        verdict = "yes" if phase in expected_phases(kind, name) else "NO" if phase in SETTLED else "unfinished"
        rows.append((f"{kind}/{name}", phase, took(item), verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)) for row in rows]


class Timeline:
    """Wall-clock marks of the demo's phases since its start (for the output and for bench/demo_bench.py)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = self.started
        self.phases: list[tuple[str, float]] = []
        self.reconciled: float | None = None
        """Seconds from the start to every resource reconciled and judged (before the summary and teardown)."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def mark(self, phase: str) -> None:
        """The phase that just ended (its duration is the time since the previous mark)."""
        now = time.monotonic()
        self.phases.append((phase, now - self.last))
        self.last = now

    def write(self, path: Path | None, *, code: int, total: float) -> None:
        if path is not None:
            path.write_text(json.dumps({"exit_code": code, "total_seconds": round(total, 2),
                                        "reconciled_seconds": self.reconciled and round(self.reconciled, 2),
                                        "phases": [[phase, round(s, 2)] for phase, s in self.phases]}, indent=2))
