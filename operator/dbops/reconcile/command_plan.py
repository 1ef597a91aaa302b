"""Command mode's plan output: parsed (Django ``migrate --plan``, Alembic ``history``), hashed and bounded for status.

The approval covers ``plan.hash``: sha256 of the run's revision (image, command, env …) and of the complete
output, so a new image with the same plan text still needs a new approval, and the same spec whose database
moved (the framework now plans something else) does too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from dbops.api.migration import MigrationPlan
from dbops.api.migration_command_plan import CommandPlanReport
from dbops.api.migration_plan import PlanReport

EXCERPT_LINES = 40
EXCERPT_CHARS = 4096
MAX_PENDING = 100
MAX_OUTPUT_BYTES = 512 * 1024
"""What the operator reads of a plan's log (a ConfigMap holds at most 1 MiB; a plan is rarely over 100 KiB)."""
CONFIG_MAP_KEY = "plan.txt"

_DJANGO_HEADER = "Planned operations:"
_DJANGO_NOTHING = "No planned migration operations."
_DJANGO_MIGRATION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z0-9_]+$")
# Django describes an operation as it will run it: a backwards plan prefixes "Undo", a removal says so.
_DJANGO_DESTRUCTIVE = re.compile(r"^(Undo |Remove field |Delete model |Remove |IRREVERSIBLE)")
# ``alembic history`` lines: "<down> -> <rev> (head) (current), message"; down is <base>, a revision or (a, b).
_ALEMBIC_LINE = re.compile(r"^(?P<down><base>|\(?[0-9A-Za-z_, ]+\)?) -> (?P<rev>[0-9A-Za-z_]+)"
                           r"(?P<marks>(?: \([a-z]+\))*)(?:, (?P<doc>.*))?$")


@dataclass(frozen=True)
class PlanLog:
    """A finished plan Job's log as the controller read it (credentials masked), with its ConfigMap manifest."""

    text: str | None
    """None when the log could not be read (the pod is gone)."""
    truncated: bool = False
    """The log is longer than MAX_OUTPUT_BYTES; text holds the first part."""
    config_map: dict[str, Any] = field(default_factory=dict)
    """The ConfigMap to write when the excerpt does not show the whole output (built by the controller)."""


@dataclass(frozen=True)
class ParsedPlan:
    """What a framework's plan output says, when recognised."""

    framework: str = ""
    pending: tuple[str, ...] = ()
    operations: int | None = None
    destructive: bool = False


def parse_django(text: str) -> ParsedPlan:
    """``manage.py migrate --plan``: ``app.name`` lines, each followed by its indented operations."""
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == _DJANGO_HEADER)
    except StopIteration:
        return ParsedPlan()
    pending: list[str] = []
    operations, destructive = 0, False
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        if line.strip() == _DJANGO_NOTHING:
            return ParsedPlan("django", (), 0, False)
        if line[:1].isspace():
            if pending:
                operations += 1
                destructive = destructive or bool(_DJANGO_DESTRUCTIVE.match(line.strip()))
            continue
        if _DJANGO_MIGRATION.match(line):
            pending.append(line)
        # anything else (a warning a setting printed) is neither a migration nor an operation
    if not pending:
        return ParsedPlan()  # a header and nothing Django would print after it: not recognised
    return ParsedPlan("django", tuple(pending), operations, destructive)


def parse_alembic(text: str) -> ParsedPlan:
    """``alembic history --indicate-current -r current:<target>``: revisions newest first; ``(current)`` is applied."""
    parsed = [match for line in text.splitlines() if (match := _ALEMBIC_LINE.match(line.strip()))]
    if not parsed:
        return ParsedPlan()  # also an empty database with no revisions: then running the command costs nothing
    pending = [match["rev"] for match in reversed(parsed) if "(current)" not in match["marks"]]
    if len(pending) == len(parsed) and "<base>" not in {match["down"] for match in parsed}:
        # no (current) mark and the range does not start at the base: the database's revision is not in the
        # range (e.g. it is ahead of the target); what the upgrade does is not known from this output
        return ParsedPlan("alembic", tuple(pending), None, False)
    return ParsedPlan("alembic", tuple(pending), len(pending), False)


def parse(framework: str | None, text: str) -> ParsedPlan:
    """The plan output of a framework's plan command (not recognised: ParsedPlan())."""
    if framework == "django":
        return parse_django(text)
    if framework == "alembic":
        return parse_alembic(text)
    return ParsedPlan()


def output_hash(text: str) -> str:
    """sha256 of the output as stored (what ``sha256sum`` of the ConfigMap's plan.txt prints)."""
    return hashlib.sha256(text.encode()).hexdigest()


def plan_hash(revision: str, text: str) -> str:
    """The approved hash: the run's revision (image, command, env …) and the complete output."""
    return hashlib.sha256(f"{revision}\0{output_hash(text)}".encode()).hexdigest()


def excerpt(text: str) -> tuple[str, int]:
    """The first EXCERPT_LINES lines, at most EXCERPT_CHARS characters (whole lines), and how many lines it shows."""
    shown: list[str] = []
    size = 0
    for line in text.splitlines()[:EXCERPT_LINES]:
        if size + len(line) + 1 > EXCERPT_CHARS:
            if not shown:  # one very long first line: show its start rather than nothing
                shown.append(line[:EXCERPT_CHARS - 1] + "…")
            break
        shown.append(line)
        size += len(line) + 1
    return "\n".join(shown), len(shown)


def plan_from_log(log: PlanLog, *, framework: str | None, command: list[str], revision: str) -> MigrationPlan:
    """status.plan for a captured plan output (log.text must be set)."""
    text = log.text or ""
    parsed = parse(framework, text)
    shown, shown_lines = excerpt(text)
    total_lines = len(text.splitlines())
    complete = shown_lines == total_lines and shown == text.rstrip("\n") and not log.truncated
    config_map = "" if complete else str((log.config_map.get("metadata") or {}).get("name") or "")
    notes = []
    if not complete:
        notes.append(f"the excerpt shows {shown_lines} of {total_lines} lines; the complete output is in ConfigMap "
                     f"{config_map} (key {CONFIG_MAP_KEY})")
    if log.truncated:
        notes.append(f"the output is longer than {MAX_OUTPUT_BYTES // 1024} KiB: only its first "
                     f"{MAX_OUTPUT_BYTES // 1024} KiB were read, and the hash covers only them")
    if len(parsed.pending) > MAX_PENDING:
        notes.append(f"pending shows {MAX_PENDING} of {len(parsed.pending)} migrations")
    if not parsed.framework:
        notes.append("the output was not recognised as Django's or Alembic's plan: operations are not counted")
    report = CommandPlanReport(
        framework=parsed.framework, command=command, output_hash=output_hash(text),
        output_bytes=len(text.encode()), output_lines=total_lines, excerpt=shown, excerpt_lines=shown_lines,
        operations=parsed.operations, migrations=len(parsed.pending) if parsed.framework else None,
        config_map=config_map, truncated=log.truncated, note="; ".join(notes))
    # Where the complete output is, as for a SQL source's report (the plan ConfigMap convention).
    where = PlanReport(available=True, config_map=config_map, key=CONFIG_MAP_KEY, pending=len(parsed.pending),
                       sha256=output_hash(text), size_bytes=len(text.encode()),
                       message=f"complete plan output in ConfigMap {config_map}") if config_map else None
    return MigrationPlan(hash=plan_hash(revision, text), pending=list(parsed.pending[:MAX_PENDING]),
                         destructive=parsed.destructive, command=report, report=where)


def nothing_to_apply(plan: MigrationPlan) -> bool:
    """The framework's plan said there is nothing to apply (never concluded from output not recognised)."""
    report = plan.command
    return report is not None and bool(report.framework) and report.operations == 0 and not plan.pending


def summary(plan: MigrationPlan) -> str:
    """``django plans 16 migrations (27 operations)`` for messages, or ``the plan (12 lines)``."""
    report = plan.command
    if report is None:
        return "the plan"
    if report.framework and report.migrations is not None:
        unit = "migrations" if report.framework == "django" else "revisions"
        operations = f" ({report.operations} operations)" if report.framework == "django" else ""
        return f"{report.framework}'s plan: {report.migrations} {unit}{operations}"
    return f"the plan ({report.output_lines} lines)"
