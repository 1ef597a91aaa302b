"""Command mode's plan: the framework's own account of what the command will do, captured before it runs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from dbops.api.base import ApiModel
from dbops.api.framework_detect import detect

PlanMode = Literal["Auto", "Required", "Disabled"]
# Options of Django's migrate that do not belong in the plan: --check exits 1 when there is anything to apply.
_DJANGO_DROPPED = frozenset({"--check"})
# Alembic targets the history range can name: a revision, head(s), a branch label (name@head); not relative steps.
_ALEMBIC_TARGET = re.compile(r"^[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?$")
_ALEMBIC_VALUE_OPTIONS = frozenset({"-c", "--config", "-n", "--name", "-x", "--tag"})


def default_plan_command(argv: Sequence[str]) -> list[str] | None:
    """The framework's plan of ``argv``, or None when the framework or its target is not known.

    - Django (``manage.py``/``django-admin`` ``migrate [app] [target]``): the same command with ``--plan``, so the
      plan names the same apps and target; it reads ``django_migrations``, so it shows what *this* database lacks.
    - Alembic (``alembic [global options] upgrade <target>``): ``alembic history --indicate-current -r
      current:<target>``. Offline ``upgrade --sql`` does not read the database: it prints the SQL from the first
      revision, whatever the database has applied, so its hash would not change when the database moved and an
      approval of it would not cover what runs. The history range starts at the database's current revision
      (marked ``(current)``), so it lists exactly the revisions the upgrade applies. Who wants the offline SQL of
      that range sets planCommand (e.g. ``alembic upgrade <current>:head --sql``).
    """
    framework = detect(argv)
    names = [PurePath(part).name for part in argv]
    if framework == "django":
        entry = next(i for i, name in enumerate(names) if name in ("manage.py", "django-admin"))
        if "migrate" not in argv[entry + 1:]:
            return None
        if "--plan" in argv:
            return list(argv)
        return [*(part for part in argv if part not in _DJANGO_DROPPED), "--plan"]
    if framework == "alembic":
        entry = names.index("alembic")
        rest = list(argv[entry + 1:])
        if "upgrade" not in rest or "--sql" in rest:
            return None  # a downgrade, another subcommand, or an offline run that does not touch the database
        verb = rest.index("upgrade")
        target = _alembic_target(rest[verb + 1:])
        if target is None:
            return None
        return [*argv[:entry + 1], *rest[:verb], "history", "--indicate-current", "-r", f"current:{target}"]
    return None


def _alembic_target(args: Sequence[str]) -> str | None:
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _ALEMBIC_VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            return arg if _ALEMBIC_TARGET.match(arg) else None
    return None


class CommandPlanReport(ApiModel):
    """The output of the framework's plan command (command mode), bounded; the complete text when longer."""

    framework: str = ""
    """django or alembic when the output was recognised; empty otherwise (then operations is not counted)."""
    # 64 arguments of source.command plus the default's additions (--plan; Alembic's history range).
    command: Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=80)] = Field(
        default_factory=list)
    """The plan command that ran (in the application's image, with the command's env)."""
    output_hash: str = ""
    """sha256 of the complete output (as in the ConfigMap, credentials masked)."""
    output_bytes: int = 0
    """Size of the complete output."""
    output_lines: int = 0
    """Lines of the complete output."""
    excerpt: Annotated[str, StringConstraints(max_length=8192)] = ""
    """The first lines of the output."""
    excerpt_lines: int = 0
    """How many lines the excerpt shows; fewer than outputLines means the rest is in configMap."""
    operations: int | None = None
    """Operations the plan lists (Django: the operations of its migrations; Alembic: revisions to apply); unset
    when the output was not recognised."""
    migrations: int | None = None
    """Migrations (Django) or revisions (Alembic) the plan applies, all of them (status.plan.pending shows them)."""
    config_map: str = ""
    """The ConfigMap (key plan.txt) holding the complete output, when the excerpt does not show all of it."""
    truncated: bool = False
    """The output was longer than the operator reads (see note): the hash covers only the part read."""
    note: str = ""
    """What is not shown, and where it is."""
    confirmed: bool = False
    """Manual approval: the plan ran again right before the command and was the approved one."""
