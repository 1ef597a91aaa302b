"""Command mode's plan end to end with a real Django project (PostgreSQL 15 and 18): `manage.py migrate --plan` runs first (its log read
through pods/log), status.plan lists the Django migrations, manual approval covers the plan's hash, and a plan
that changed after the approval is refused (PlanChanged) before the command runs.

The process executor ignores images and runs the container command on the host, so the Django test project
(tests/integration/django_app) stands in for the user's application image.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.integration import operator_harness as harness

from dbops.api.base import GROUP, VERSION
from dbops.reconcile import command_plan
from dbops_testbed.postgres import PostgresServer, running_postgres

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
MANAGE = Path(__file__).parent / "django_app" / "manage.py"
DJANGO_MIGRATE = [sys.executable, str(MANAGE), "migrate", "--noinput"]
MENTORSHIP = ["mentorship.0001_initial", "mentorship.0002_booking_status"]


def command_spec(**extra: Any) -> dict[str, Any]:
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
            "source": {"command": {"image": "registry.example/mentorhub:1.4", "command": DJANGO_MIGRATE,
                                   "env": [{"name": "DJANGO_SETTINGS_MODULE", "value": "mentorhub.settings"}]}},
            "preChecks": {"enabled": False}, **extra}


def django(server: PostgresServer, database: str, *args: str) -> str:
    """manage.py run by someone else (outside dbops) against the same database."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")},
           "DBOPS_DATABASE_URI": server.uri(database), "PGSSLMODE": "disable",
           "DJANGO_SETTINGS_MODULE": "mentorhub.settings"}
    return subprocess.run([sys.executable, str(MANAGE), *args], check=True, capture_output=True, text=True,
                          env=env, timeout=300).stdout


def applied(server: PostgresServer, database: str) -> list[str]:
    if server.psql("SELECT to_regclass('public.django_migrations') IS NOT NULL", database).strip() != "t":
        return []
    rows = server.psql("SELECT app || '.' || name FROM django_migrations WHERE app = 'mentorship' ORDER BY 1",
                       database)
    return [row for row in rows.splitlines() if row]


@pytest.fixture(scope="module", params=(15, 18), ids=lambda major: f"pg{major}")
def django_server(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The server Django migrates, on both supported majors (18: the operator tests' shared server)."""
    if request.param == postgres.major:
        yield postgres
        return
    with running_postgres(request.param) as server:
        yield server


@pytest.fixture
def django_database(django_server: PostgresServer) -> Iterator[str]:
    """An empty database for Django (its migrations create every table)."""
    name = f"django_{uuid.uuid4().hex[:8]}"
    django_server.create_database(name)
    yield name
    django_server.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    django_server.drop_database(name)


def approve(kube_client: Any, namespace: str, name: str, plan_hash: str) -> None:
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "databasemigrations", name,
        {"spec": {"approval": {"mode": "Manual", "approvedPlanHash": plan_hash}}}, _preload_content=False)


def roles(kube_client: Any, namespace: str, name: str) -> list[str]:
    return sorted(job["metadata"]["labels"]["dbops.io/role"] for job in harness.list_jobs(kube_client, namespace)
                  if job["metadata"]["name"].startswith(name))


def config_map_text(kube_client: Any, namespace: str, name: str) -> str:
    body = client.CoreV1Api(kube_client).read_namespaced_config_map(name, namespace)
    return str(body.data[command_plan.CONFIG_MAP_KEY])


def awaiting_approval(kube_client: Any, namespace: str, postgres: PostgresServer, database: str,
                      name: str) -> dict[str, Any]:
    """A Django migration with manual approval, once it waits for approval of its plan: its status."""
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(database)})
    harness.create_resource(kube_client, namespace, MIGRATION, name, command_spec(approval={"mode": "Manual"}))
    status: dict[str, Any] = harness.wait_for_phase(kube_client, namespace, MIGRATION, name,
                                                    {"AwaitingApproval", "Failed", "Succeeded"})["status"]
    assert status["phase"] == "AwaitingApproval", status
    return status


def test_the_django_plan_is_approved_then_migrated(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, django_server: PostgresServer,
        django_database: str) -> None:
    status = awaiting_approval(kube_client, namespace, django_server, django_database, "gated")
    plan = status["plan"]
    report = plan["command"]
    assert report["framework"] == "django" and report["command"] == [*DJANGO_MIGRATE, "--plan"]
    assert plan["pending"][-2:] == MENTORSHIP and "contenttypes.0001_initial" in plan["pending"]
    assert report["migrations"] == len(plan["pending"]) and report["operations"] >= len(MENTORSHIP) + 1
    assert plan["hash"] in status["message"] and "django's plan" in status["message"]
    assert report["excerpt"].startswith("Planned operations:\n") and report["configMap"] == ""
    # The whole plan fits the excerpt: it is the complete output the hash covers.
    assert report["excerptLines"] == report["outputLines"] == len(report["excerpt"].splitlines())
    assert hashlib.sha256((report["excerpt"] + "\n").encode()).hexdigest() == report["outputHash"]
    assert django_server.password not in str(status)
    assert applied(django_server, django_database) == [] and roles(kube_client, namespace, "gated") == ["plan"]

    approve(kube_client, namespace, "gated", plan["hash"])
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "gated", {"Succeeded", "Failed"},
                                    timeout=400)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["plan"]["hash"] == plan["hash"] and status["plan"]["command"]["confirmed"] is True
    assert applied(django_server, django_database) == MENTORSHIP
    assert roles(kube_client, namespace, "gated") == ["command", "plan", "plan", "verify"]  # plan, then confirm
    events = {event["reason"] for event in harness.wait_for_event(kube_client, namespace, "gated",
                                                                  "MigrationSucceeded")}
    assert {"PlanStarted", "PlanConfirmStarted", "MigrationSucceeded"} <= events


def test_a_plan_changed_after_approval_is_refused_and_nothing_to_apply_succeeds(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, django_server: PostgresServer,
        django_database: str) -> None:
    status = awaiting_approval(kube_client, namespace, django_server, django_database, "moved")
    approved_hash = status["plan"]["hash"]

    django(django_server, django_database, "migrate", "mentorship", "0001", "--noinput")  # someone migrates meanwhile
    approve(kube_client, namespace, "moved", approved_hash)
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "moved", {"Succeeded", "Failed"},
                                    timeout=400)["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Failed" and ready["reason"] == "PlanChanged", status
    assert approved_hash in ready["message"] and "no longer planned: mentorship.0001_initial;" in ready["message"]
    assert "the command was not run" in ready["message"]
    assert "command" not in roles(kube_client, namespace, "moved")
    assert applied(django_server, django_database) == MENTORSHIP[:1]  # the command never ran: 0002 is still pending
    warnings = [event for event in harness.wait_for_event(kube_client, namespace, "moved", "PlanChanged")
                if event["type"] == "Warning"]
    assert any("PlanChanged" in event["message"] for event in warnings)

    django(django_server, django_database, "migrate", "--noinput")
    harness.create_resource(kube_client, namespace, MIGRATION, "current", command_spec(approval={"mode": "Manual"}))
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "current", {"Succeeded", "Failed"})["status"]
    assert status["phase"] == "Succeeded", status
    assert "nothing to apply" in status["message"] and status["plan"]["command"]["operations"] == 0
    assert roles(kube_client, namespace, "current") == ["plan"]  # no approval needed, no command run


def test_a_failing_plan_names_the_command_and_its_output(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    spec = command_spec()
    spec["source"]["command"]["command"] = [*DJANGO_MIGRATE[:3], "no_such_app", "--noinput"]
    harness.create_resource(kube_client, namespace, MIGRATION, "broken", spec)
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "broken", {"Succeeded", "Failed"})["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "Failed" and ready["reason"] == "PlanFailed", status
    assert "no_such_app" in ready["message"] and "exited with code 1" in ready["message"]
    assert "--plan" in ready["message"] and "Traceback" not in ready["message"]
    assert roles(kube_client, namespace, "broken") == ["plan"]


def test_a_long_plan_is_complete_in_its_config_map(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    spec = command_spec()
    # A tool without a default plan: its own plan command, printing more than the status excerpt holds.
    spec["source"]["command"]["command"] = [sys.executable, "-c", "print('applied')"]
    spec["source"]["command"]["planCommand"] = [
        sys.executable, "-c", "import os\nprint('plan for', os.environ['DATABASE_URL'])\n"
        "for n in range(120): print(f'step {n:03d}: ALTER TABLE bookings ADD COLUMN c{n} int')"]
    harness.create_resource(kube_client, namespace, MIGRATION, "long", spec)
    status = harness.wait_for_phase(kube_client, namespace, MIGRATION, "long", {"Succeeded", "Failed"})["status"]
    assert status["phase"] == "Succeeded", status
    report = status["plan"]["command"]
    assert report.get("framework", "") == "" and "operations" not in report and report["outputLines"] == 121
    assert report["excerptLines"] == command_plan.EXCERPT_LINES and report["configMap"] in report["note"]
    text = config_map_text(kube_client, namespace, report["configMap"])
    # The plan ConfigMap convention: status.plan.report points to it too, named for the revision and plan.
    where = status["plan"]["report"]
    assert where["configMap"] == report["configMap"] and report["configMap"].startswith("long-plan-")
    assert (where["key"], where["available"], where["sha256"]) == ("plan.txt", True, report["outputHash"])
    body = client.CoreV1Api(kube_client).read_namespaced_config_map(report["configMap"], namespace)
    assert body.immutable and body.data["planHash"] == status["plan"]["hash"]
    assert body.metadata.labels["dbops.io/role"] == "plan"
    assert hashlib.sha256(text.encode()).hexdigest() == report["outputHash"]
    assert len(text.splitlines()) == 121 and "step 119:" in text
    assert postgres.password not in text and postgres.password not in str(status)  # the URI is masked
    assert roles(kube_client, namespace, "long") == ["command", "plan", "verify"]


def test_the_real_django_plan_parses_on_each_postgres(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    forward = command_plan.parse_django(django(server, db, "migrate", "--noinput", "--plan"))
    assert forward.framework == "django" and forward.pending[-2:] == tuple(MENTORSHIP) and forward.operations
    django(server, db, "migrate", "--noinput")
    nothing = command_plan.parse_django(django(server, db, "migrate", "--noinput", "--plan"))
    assert nothing.framework == "django" and nothing.operations == 0 and nothing.pending == ()
    zero = command_plan.parse_django(django(server, db, "migrate", "mentorship", "zero", "--noinput", "--plan"))
    assert zero.pending == tuple(reversed(MENTORSHIP)) and zero.destructive
