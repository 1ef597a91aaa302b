"""Command mode's plan: default plan commands, parsing Django's and Alembic's plans, hashes, bounded status, the Job."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.migration_command_plan import default_plan_command
from dbops.reconcile import command_plan
from dbops.reconcile.command_plan import PlanLog
from dbops.specs import command_plan as plan_specs
from dbops.specs.owner import Owner

DATA = Path(__file__).parent.parent / "data" / "command_plan"
DJANGO_FORWARD = (DATA / "django-forward.txt").read_text()  # manage.py migrate --plan, Django 5.2, a new database
DJANGO_ZERO = """Planned operations:
mentorship.0002_booking_status
    Undo Add field status to booking
mentorship.0001_initial
    Undo Create model Mentor
    Undo Create model Booking
"""
DJANGO_NOTHING = "Planned operations:\n  No planned migration operations.\n"
ALEMBIC_PENDING = """INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.
INFO  [alembic.runtime.migration] Will assume transactional DDL.
1975ea83b712 -> 27c6a30d7c24 (head), add status to booking
ae1027a6acf -> 1975ea83b712, create account table
3b2c1e0f9a11 -> ae1027a6acf (current), add a column
"""
ALEMBIC_AT_HEAD = "27c6a30d7c24 -> 4d1f0e2a9b33 (head) (current), add index\n"
ALEMBIC_EMPTY_DATABASE = """ae1027a6acf -> 1975ea83b712 (head), create account table
<base> -> ae1027a6acf, first
"""
OWNER = Owner(kind="DatabaseMigration", namespace="prod", name="mentorhub", uid="uid-1")


@pytest.mark.parametrize(("argv", "expected"), [
    (["python", "/app/manage.py", "migrate", "--noinput"], ["python", "/app/manage.py", "migrate", "--noinput",
                                                            "--plan"]),
    (["python", "manage.py", "migrate", "mentorship", "zero"], ["python", "manage.py", "migrate", "mentorship",
                                                               "zero", "--plan"]),
    (["django-admin", "migrate", "--check", "--settings=app.settings"], ["django-admin", "migrate",
                                                                        "--settings=app.settings", "--plan"]),
    (["python", "manage.py", "migrate", "--plan"], ["python", "manage.py", "migrate", "--plan"]),
    (["python", "manage.py", "collectstatic"], None),
    (["alembic", "upgrade", "head"], ["alembic", "history", "--indicate-current", "-r", "current:head"]),
    (["/venv/bin/alembic", "-c", "db/alembic.ini", "-x", "tenant=a", "upgrade", "--tag", "t", "ae1027a6acf"],
     ["/venv/bin/alembic", "-c", "db/alembic.ini", "-x", "tenant=a", "history", "--indicate-current", "-r",
      "current:ae1027a6acf"]),
    (["alembic", "upgrade", "+2"], None),  # a relative step: no history range names it
    (["alembic", "upgrade", "head", "--sql"], None),  # offline: the command itself touches no database
    (["alembic", "downgrade", "-1"], None),
    (["/flyway/flyway", "migrate"], None),
    (["./bin/rails", "db:migrate"], None),
])
def test_default_plan_command(argv: list[str], expected: list[str] | None) -> None:
    assert default_plan_command(argv) == expected


def test_django_forward_plan_lists_every_migration_and_operation() -> None:
    parsed = command_plan.parse_django(DJANGO_FORWARD)
    assert parsed.framework == "django"
    assert parsed.pending[0] == "contenttypes.0001_initial" and parsed.pending[-1] == "mentorship.0002_booking_status"
    assert len(parsed.pending) == 16 and "auth.0006_require_contenttypes_0002" in parsed.pending  # no operations
    assert parsed.operations == sum(1 for line in DJANGO_FORWARD.splitlines() if line.startswith("    "))
    assert parsed.destructive  # contenttypes.0002 removes a field


def test_django_rollback_plan_is_destructive_and_nothing_is_recognised_only_from_django() -> None:
    zero = command_plan.parse_django(DJANGO_ZERO)
    assert zero.pending == ("mentorship.0002_booking_status", "mentorship.0001_initial")
    assert zero.operations == 3 and zero.destructive
    nothing = command_plan.parse_django(DJANGO_NOTHING)
    assert nothing.framework == "django" and nothing.operations == 0 and nothing.pending == ()
    # Output that is not Django's plan is never read as "nothing to apply".
    assert command_plan.parse_django("Traceback (most recent call last):\n") == command_plan.ParsedPlan()
    assert command_plan.parse_django("Planned operations:\nsomething else\n") == command_plan.ParsedPlan()
    warned = "System check identified some issues:\nWARNINGS:\n?: (x.W1) y\n\n" + DJANGO_ZERO
    assert command_plan.parse_django(warned).pending == zero.pending


def test_alembic_history_from_the_current_revision() -> None:
    pending = command_plan.parse_alembic(ALEMBIC_PENDING)
    assert pending.pending == ("1975ea83b712", "27c6a30d7c24") and pending.operations == 2  # oldest first
    at_head = command_plan.parse_alembic(ALEMBIC_AT_HEAD)
    assert at_head.framework == "alembic" and at_head.pending == () and at_head.operations == 0
    empty = command_plan.parse_alembic(ALEMBIC_EMPTY_DATABASE)
    assert empty.pending == ("ae1027a6acf", "1975ea83b712") and empty.operations == 2
    assert command_plan.parse_alembic("FAILED: Can't locate revision identified by 'x'\n").operations is None


def test_hashes_cover_the_output_and_the_revision() -> None:
    assert command_plan.output_hash(DJANGO_ZERO) == hashlib.sha256(DJANGO_ZERO.encode()).hexdigest()
    same = command_plan.plan_hash("rev1", DJANGO_ZERO)
    assert same == command_plan.plan_hash("rev1", DJANGO_ZERO) and len(same) == 64
    assert command_plan.plan_hash("rev2", DJANGO_ZERO) != same  # a new image with the same plan text
    assert command_plan.plan_hash("rev1", DJANGO_ZERO + "x") != same


def test_a_short_plan_is_complete_in_status() -> None:
    plan = command_plan.plan_from_log(PlanLog(DJANGO_ZERO, config_map={"metadata": {"name": "cm"}}),
                                      framework="django", command=["manage.py", "migrate", "--plan"], revision="r")
    report = plan.command
    assert report is not None and report.excerpt == DJANGO_ZERO.rstrip("\n") and report.config_map == ""
    assert report.excerpt_lines == report.output_lines == 6 and report.operations == 3 and report.migrations == 2
    assert plan.pending == ["mentorship.0002_booking_status", "mentorship.0001_initial"] and plan.destructive
    assert report.output_hash == command_plan.output_hash(DJANGO_ZERO) and plan.hash == command_plan.plan_hash(
        "r", DJANGO_ZERO)
    assert not command_plan.nothing_to_apply(plan)
    assert command_plan.summary(plan) == "django's plan: 2 migrations (3 operations)"


def test_a_long_plan_names_its_config_map_and_is_never_cut_silently() -> None:
    long = "Planned operations:\n" + "".join(f"app.{n:04d}_step\n    Add field f{n} to t\n" for n in range(300))
    plan = command_plan.plan_from_log(PlanLog(long, config_map={"metadata": {"name": "mentorhub-command-plan-x"}}),
                                      framework="django", command=[], revision="r")
    report = plan.command
    assert report is not None and report.config_map == "mentorhub-command-plan-x"
    assert report.excerpt_lines == command_plan.EXCERPT_LINES and report.output_lines == 601
    assert "40 of 601 lines" in report.note and "mentorhub-command-plan-x" in report.note
    assert len(plan.pending) == command_plan.MAX_PENDING and report.migrations == 300 and report.operations == 300
    assert "pending shows 100 of 300" in report.note
    truncated = command_plan.plan_from_log(PlanLog("x\n", truncated=True, config_map={"metadata": {"name": "c"}}),
                                           framework=None, command=[], revision="r")
    assert truncated.command is not None and truncated.command.truncated and truncated.command.config_map == "c"
    assert "only its first 512 KiB" in truncated.command.note and truncated.command.operations is None
    wide, shown = command_plan.excerpt("y" * 10000)
    assert shown == 1 and len(wide) == command_plan.EXCERPT_CHARS


def test_nothing_to_apply_only_when_the_framework_says_so() -> None:
    for text, framework in ((DJANGO_NOTHING, "django"), (ALEMBIC_AT_HEAD, "alembic")):
        plan = command_plan.plan_from_log(PlanLog(text), framework=framework, command=[], revision="r")
        assert command_plan.nothing_to_apply(plan), text
    for text, framework in (("", "django"), ("", "alembic"), ("", None), ("custom tool: 0 changes", None)):
        plan = command_plan.plan_from_log(PlanLog(text), framework=framework, command=[], revision="r")
        assert not command_plan.nothing_to_apply(plan), text


def spec(**command: object) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({
        "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "source": {"command": {"image": "registry.example/app:1.4", "command": ["python", "manage.py", "migrate"],
                               "env": [{"name": "SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "app",
                                                                                             "key": "k"}}}],
                               **command}},
        "jobTemplate": {"image": "registry.example/dbops:custom"}})


def test_the_plan_job_runs_the_plan_in_the_users_image_restricted() -> None:
    plan_name, confirm_name = plan_specs.plan_job_names(OWNER, "rev1")
    assert plan_name != confirm_name and plan_name.startswith("mentorhub-plan-")
    job = plan_specs.build_plan_job(OWNER, spec(), name=plan_name, argv=["python", "manage.py", "migrate", "--plan"])
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/app:1.4"  # jobTemplate.image replaces only our image
    assert container["command"] == ["python", "manage.py", "migrate", "--plan"] and "args" not in container
    assert "initContainers" not in pod and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {item["name"]: item for item in container["env"]}
    assert env["SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "app", "key": "k"}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "uri"}
    assert all("value" not in item or "postgres" not in str(item["value"]) for item in container["env"])
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["operator"] == "NotIn"
    assert job["metadata"]["labels"]["dbops.io/role"] == "plan"


def test_the_config_map_is_owned_immutable_and_per_revision_and_plan() -> None:
    def build(text: str, revision: str) -> dict[str, Any]:
        return plan_specs.build_config_map(OWNER, text, revision=revision, plan_hash=f"h-{revision}-{text}",
                                           sha256=f"s-{text}")

    config_map = build("text", "rev1")
    assert config_map["data"] == {"plan.txt": "text", "planHash": "h-rev1-text"}
    assert config_map["immutable"] is True and config_map["metadata"]["labels"]["dbops.io/role"] == "plan"
    assert config_map["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert config_map["metadata"]["annotations"] == {"dbops.io/revision": "rev1", "dbops.io/plan-hash": "h-rev1-text",
                                                     "dbops.io/report-sha256": "s-text"}
    assert config_map["metadata"]["name"].startswith("mentorhub-plan-")
    names = {build(text, revision)["metadata"]["name"] for text in ("a", "b") for revision in ("rev1", "rev2")}
    assert len(names) == 4, "two plans (or revisions) would share a ConfigMap: an approved plan's text could change"


def test_plan_command_is_refused_with_plan_disabled() -> None:
    with pytest.raises(ValidationError, match="planCommand is not used with plan: Disabled"):
        spec(plan="Disabled", planCommand=["x"])
    assert spec(plan="Required", planCommand=["python", "manage.py", "showmigrations"]).source.command is not None


def test_the_longest_command_still_fits_status() -> None:
    argv = ["/venv/bin/alembic", *(["-x", "k=v"] * 30), "upgrade", "head"]
    assert len(argv) <= 64  # what admission allows
    plan = default_plan_command(argv)
    assert plan is not None and len(plan) > 64
    report = command_plan.plan_from_log(PlanLog("x"), framework="alembic", command=plan, revision="r").command
    assert report is not None and report.command == plan
