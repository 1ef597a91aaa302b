"""The complete plan report: framed on one line of the plan Job's log, kept in a ConfigMap (plain: no pydantic)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FRAME_PREFIX = "dbops.io/plan-report v1 "
"""Starts the one log line carrying the report: ``<prefix><sha256 of the JSON> <JSON>``."""

REPORT_KEY = "report.json"
"""The ConfigMap key holding the report exactly as the runner framed it (its sha256 is in status)."""
FINDINGS_KEY = "findings.txt"
"""The ConfigMap key holding the lint findings as text, one a line."""
PLAN_HASH_KEY = "planHash"
"""The ConfigMap key holding the plan hash the report belongs to (the one approval covers)."""

CONFIG_MAP_LIMIT = 1024 * 1024
"""What a ConfigMap's data may hold (1 MiB, the API server's limit)."""
CONFIG_MAP_ROOM = CONFIG_MAP_LIMIT - 16 * 1024
"""What the report and its findings text may take, leaving room for keys, metadata and labels."""


def _json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)


def frame(document: Mapping[str, Any]) -> str:
    """The log line carrying a report (no newline inside: JSON escapes them)."""
    data = _json(document)
    return f"{FRAME_PREFIX}{hashlib.sha256(data.encode()).hexdigest()} {data}"


@dataclass(frozen=True)
class FramedReport:
    """A report read back from a log, checked against its sha256."""

    data: str
    sha256: str
    document: dict[str, Any]


def find(log: str) -> FramedReport | str:
    """The last framed report in a pod log, or why none could be read (missing, cut or damaged)."""
    lines = [line for line in log.split("\n") if line.startswith(FRAME_PREFIX)]
    if not lines:
        return "the plan Job's log holds no plan report"
    digest, _, data = lines[-1][len(FRAME_PREFIX):].rstrip("\r").partition(" ")
    if hashlib.sha256(data.encode()).hexdigest() != digest:
        return "the plan report in the plan Job's log is incomplete (cut or damaged: its sha256 does not match)"
    try:
        document = json.loads(data)
    except ValueError:
        return "the plan report in the plan Job's log is not JSON"
    if not isinstance(document, dict):
        return "the plan report in the plan Job's log is not a JSON object"
    return FramedReport(data, digest, document)


def plan_of(document: Mapping[str, Any]) -> dict[str, Any]:
    """The report's ``plan`` object ({} when it has none)."""
    plan = document.get("plan")
    return plan if isinstance(plan, dict) else {}


def lint_items(document: Mapping[str, Any]) -> list[Any]:
    """The report's lint findings."""
    items = plan_of(document).get("lint")
    return list(items) if isinstance(items, list) else []


def finding_line(item: Any) -> str:
    """One finding as text: ``<version> <file>:<line> <level> <rule>: <message>``."""
    if not isinstance(item, dict):
        return str(item)
    where = f"{item.get('file') or item.get('version', '?')}:{item.get('line') or 1}"
    destructive = " (destructive)" if item.get("destructive") else ""
    return (f"{item.get('version', '?')} {where} {item.get('level', '?')} {item.get('rule', '?')}: "
            f"{str(item.get('message', '')).strip()}{destructive}")


def findings_text(document: Mapping[str, Any]) -> str:
    """Every lint finding of a report as text, one a line, with a closing count."""
    items = lint_items(document)
    plan = plan_of(document)
    head = f"plan {plan.get('hash', '?')}: {len(items)} lint findings, {len(plan.get('pending') or [])} pending\n"
    return head + "".join(finding_line(item) + "\n" for item in items)


def capped(items: list[str], total: int, limit: int, where: str) -> list[str]:
    """At most `limit` items, then one line saying exactly how many of `total` were left out and where they are.

    `items` are the first findings in order (possibly fewer than `total`, when the caller had only a part).
    """
    shown = items[:limit]
    left = total - len(shown)
    if left <= 0:
        return shown
    return [*shown, f"… {left} more {where}".rstrip()]
