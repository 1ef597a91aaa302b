"""dbops installed in the test bed's cluster as users install it: Helm or kustomize, then MentorHub's examples."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dbops_testbed.binaries import helm_bin
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "dbops"
KUSTOMIZE = ROOT / "manifests" / "operator"
KINDS = ("DatabaseBackup", "DatabaseBackupSchedule", "DatabaseMigration", "DatabaseRestore")
FINAL = {"Succeeded", "Failed", "RolledBack"}
T = TypeVar("T")

# A migration that fails on production data (two bookings share a mentor and a day), after the example's two.
FAILING_MIGRATION = "0003_one_booking_per_mentor_and_day.up.sql"
FAILING_SQL = ("ALTER TABLE mentorship_bookings\n"
               "    ADD CONSTRAINT bookings_one_per_mentor_day UNIQUE (mentor_id, session_date);\n")


def helm(plane: ControlPlane, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the test bed's Helm against the cluster."""
    completed = subprocess.run([str(helm_bin()), "--kubeconfig", str(plane.kubeconfig), *args],
                               capture_output=True, text=True, timeout=timeout, check=False)
    if check and completed.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args[:2])} failed: {completed.stderr.strip()}")
    return completed


def port_values() -> list[str]:
    """Free host ports for the operator's probes and metrics (pods share the host network here)."""
    return ["--set", f"health.port={free_port()}", "--set", f"metrics.port={free_port()}"]


def helm_install(plane: ControlPlane, *values: str, release: str = "dbops", namespace: str = "dbops-system",
                 timeout: str = "240s") -> str:
    """`helm install --wait` of the chart; returns Helm's output (with NOTES)."""
    completed = helm(plane, "install", release, str(CHART), "-n", namespace, "--create-namespace", "--wait",
                     "--timeout", timeout, *port_values(), *values)
    return completed.stdout


def eventually(check: Callable[[], T | None], *, timeout: float, message: str, interval: float = 1.0) -> T:
    """Poll until `check` returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}")
        time.sleep(interval)


def get_json(plane: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(plane.kubectl("get", *args, "-o", "json"))
    return result


def operator_pods(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The operator's pods (not being deleted)."""
    items = get_json(plane, "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def resources(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """Every dbops resource in the namespace."""
    items: list[dict[str, Any]] = get_json(plane, "dbops", "-n", namespace)["items"]
    return items


def resource(plane: ControlPlane, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return get_json(plane, kind.lower(), name, "-n", namespace)


def phase_of(plane: ControlPlane, namespace: str, kind: str, name: str, phases: set[str], *,
             timeout: float = 300) -> dict[str, Any]:
    """Wait until a resource reaches one of `phases`; return it."""
    def reached() -> dict[str, Any] | None:
        body = resource(plane, namespace, kind, name)
        return body if (body.get("status") or {}).get("phase") in phases else None
    return eventually(reached, timeout=timeout, message=f"{kind} {name} to reach {sorted(phases)}")


def apply(plane: ControlPlane, namespace: str, documents: list[dict[str, Any]]) -> None:
    plane.kubectl("-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))


def failing_migration(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The example's migration and ConfigMap plus a third migration that fails, rolled back by restore."""
    config_map = json.loads(json.dumps(next(d for d in documents if d["kind"] == "ConfigMap")))
    config_map["metadata"]["name"] = "mentorhub-migrations-next"
    config_map["data"][FAILING_MIGRATION] = FAILING_SQL
    migration = json.loads(json.dumps(next(d for d in documents if d["kind"] == "DatabaseMigration")))
    migration["metadata"]["name"] = "mentorhub-schema-next"
    migration["spec"]["source"] = {"configMapRef": {"name": "mentorhub-migrations-next"}}
    migration["spec"]["approval"] = {"mode": "Automatic"}
    return [config_map, migration]


def age(timestamp: str | None, now: datetime) -> str:
    if not timestamp:
        return "-"
    seconds = int((now - datetime.fromisoformat(timestamp.replace("Z", "+00:00"))).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m{seconds % 60:02d}s"


def table_rows(items: list[dict[str, Any]], now: datetime | None = None) -> list[tuple[str, str, str, str, str]]:
    """(name, kind, phase, age, message) for each resource, oldest first."""
    now = now or datetime.now(UTC)
    rows = []
    for item in sorted(items, key=lambda i: (i["metadata"].get("creationTimestamp") or "", i["metadata"]["name"])):
        status = item.get("status") or {}
        message = str(status.get("message") or "")
        rows.append((item["metadata"]["name"], item["kind"], str(status.get("phase") or "Pending"),
                     age(item["metadata"].get("creationTimestamp"), now), message))
    return rows


def render_table(rows: list[tuple[str, str, str, str, str]], width: int = 140) -> list[str]:
    """The rows as aligned text lines, messages cut to the terminal width."""
    header = ("NAME", "KIND", "PHASE", "AGE", "MESSAGE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        text = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        lines.append(text[:width])
    return lines
