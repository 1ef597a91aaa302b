"""The complete plan report of a DatabaseMigration: every lint finding in ConfigMap <name>-plan, status pointing
at it with the right counts; with the log unreadable, a clear status note and a Warning Event, not a crash."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.fixtures.cluster import read_json
from tests.integration import operator_harness as harness
from tests.integration.migrate_support import run_dbops, write_migrations
from tests.integration.test_operator_rbac import service_account_kubeconfig

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.executor import ProcessNodeExecutor
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(900)
MIGRATION = "DatabaseMigration"
FILES = 36


def history() -> dict[str, str]:
    """A shop's history as a team writes it: each migration creates a table and tightens the one before it
    (an index, a check, a foreign key, a unique key, all the simple, locking way). squawk finds several
    warnings in each file, over 100 in all."""
    files: dict[str, str] = {}
    for n in range(1, FILES + 1):
        table, before = f"invoice_lines_{n}", f"invoice_lines_{n - 1}"
        sql = (f"-- {table}: one line per invoice item\n"
               f"CREATE TABLE {table} (\n    id int PRIMARY KEY,\n    parent_id int,\n    sku varchar(40),\n"
               f"    currency char(3) NOT NULL DEFAULT 'EUR',\n    amount numeric(12,2),\n"
               f"    created_at timestamp DEFAULT now()\n);\n")
        if n > 1:
            sql += (f"CREATE INDEX {before}_sku ON {before} (sku);\n"
                    f"ALTER TABLE {before} ADD CONSTRAINT {before}_amount CHECK (amount >= 0);\n"
                    f"ALTER TABLE {before} ADD CONSTRAINT {before}_parent FOREIGN KEY (parent_id) REFERENCES {table} (id);\n"
                    f"ALTER TABLE {before} ADD CONSTRAINT {before}_sku_key UNIQUE (sku);\n")
        files[f"{n:04d}_create_{table}.up.sql"] = sql
    return files


def expected_findings(server: PostgresServer, database: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Every finding as `dbops migrate plan --output` writes it (the CLI, run beside the operator)."""
    source = write_migrations(tmp_path / "m", {name.removesuffix(".up.sql"): (sql, None)
                                               for name, sql in history().items()})
    out = tmp_path / "plan.json"
    code, capped, _ = run_dbops(server, database, "migrate", "plan", "--source", str(source), "--baseline-version",
                                "0000", "--output", str(out))
    assert code == 0, capped
    findings: list[dict[str, Any]] = json.loads(out.read_text())["plan"]["lint"]
    assert len(findings) > 100 and len(json.dumps(findings)) > 4096
    return findings


def start(kube_client: Any, namespace: str, postgres: PostgresServer, database: str, **extra: Any) -> None:
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(database)})
    client.CoreV1Api(kube_client).create_namespaced_config_map(
        namespace, {"metadata": {"name": "invoices-history"}, "data": history()}, _preload_content=False)
    harness.create_resource(kube_client, namespace, MIGRATION, "invoices", {
        "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "source": {"configMapRef": {"name": "invoices-history"}}, "baselineVersion": "0000",
        "preChecks": {"enabled": False}, **extra})


def events(kube_client: Any, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in harness.list_events(kube_client, namespace)
            if e.get("reason") == reason and e["involvedObject"]["name"] == "invoices"]


@pytest.fixture
def operator_account(installed_crds: ControlPlane, kube_client: Any,
                     namespace: str) -> Iterator[Callable[[Callable[[dict[str, Any]], None] | None], Path]]:
    """A kubeconfig for the operator's own ServiceAccount with the generated RBAC (optionally edited)."""
    made: list[Path] = []

    def make(edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        made.append(service_account_kubeconfig(installed_crds, kube_client, namespace, edit))
        return made[-1]

    yield make
    rbac_api = client.RbacAuthorizationV1Api(kube_client)
    for path in made:
        path.unlink(missing_ok=True)
        rbac_api.delete_cluster_role_binding(f"dbops-operator-{namespace}", _preload_content=False)
        rbac_api.delete_cluster_role(f"dbops-operator-{namespace}", _preload_content=False)
        rbac_api.delete_cluster_role(f"dbops-trigger-{namespace}", _preload_content=False)


def plan_config_maps(kube_client: Any, namespace: str) -> list[Any]:
    """The migration's plan ConfigMaps (the convention's labels)."""
    return list(client.CoreV1Api(kube_client).list_namespaced_config_map(
        namespace, label_selector="dbops.io/name=invoices,dbops.io/role=plan").items)


def test_every_finding_is_in_the_plan_config_map(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, postgres: PostgresServer, app_database: str,
        tmp_path: Path, operator_account: Callable[..., Path]) -> None:
    findings = expected_findings(postgres, app_database, tmp_path)
    kubeconfig = operator_account()
    start(kube_client, namespace, postgres, app_database, approval={"mode": "Manual"})
    with harness.running_operator(installed_crds, namespace, kubeconfig=kubeconfig):
        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "invoices", {"AwaitingApproval", "Failed"})
        plan = body["status"]["plan"]
        name = plan["report"]["configMap"]  # the plan ConfigMap convention: <migration>-plan-<hash>
        assert name.startswith("invoices-plan-") and len(name) == len("invoices-plan-") + 8
        config_map = read_json(client.CoreV1Api(kube_client).read_namespaced_config_map(
            name, namespace, _preload_content=False))
        report = config_map["data"]["report.json"]
        # Complete: the very findings the CLI writes to --output, for the plan the approval hash covers.
        assert json.loads(report)["plan"]["lint"] == findings
        assert config_map["data"]["planHash"] == plan["hash"] == json.loads(report)["plan"]["hash"]
        assert plan["report"] == {
            "available": True, "configMap": name, "key": "report.json", "findingsKey": "findings.txt",
            "findings": len(findings), "pending": FILES, "sha256": hashlib.sha256(report.encode()).hexdigest(),
            "sizeBytes": len(report.encode()), "message": f"complete plan report in ConfigMap {name}"}
        assert len(plan["lint"]) == 101
        assert plan["lint"][-1] == f"… {len(findings) - 100} more in ConfigMap {name} key findings.txt"
        assert plan["lint"][0].startswith(f"0001 0001_create_invoice_lines_1.up.sql:{findings[0]['line']} ")
        assert len(plan["pending"]) == FILES
        text = config_map["data"]["findings.txt"].splitlines()
        assert len(text) == len(findings) + 1 and text[0].startswith(f"plan {plan['hash']}: {len(findings)} lint")
        owner = config_map["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (MIGRATION, "invoices", body["metadata"]["uid"])
        assert config_map["metadata"]["labels"]["dbops.io/role"] == "plan" and config_map["immutable"] is True
        assert config_map["metadata"]["annotations"]["dbops.io/plan-hash"] == plan["hash"]
        stored = events(kube_client, namespace, "PlanReportStored")
        assert len(stored) == 1 and f"{len(findings)} lint findings" in stored[0]["message"]
        assert not events(kube_client, namespace, "PlanReportUnavailable")

        # Approved, the run goes on: the report is the plan that was applied.
        client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
            "dbops.io", "v1alpha1", namespace, "databasemigrations", "invoices",
            {"spec": {"approval": {"mode": "Manual", "approvedPlanHash": plan["hash"]}}}, _preload_content=False)
        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "invoices", {"Succeeded", "Failed"})
        assert body["status"]["phase"] == "Succeeded", body["status"]
        assert body["status"]["plan"]["report"]["sha256"] == plan["report"]["sha256"]
        assert len(events(kube_client, namespace, "PlanReportStored")) == 1  # written once


def test_an_unreadable_log_is_said_in_status_and_the_run_goes_on(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, postgres: PostgresServer, app_database: str,
        tmp_path: Path, operator_account: Callable[..., Path]) -> None:
    findings = expected_findings(postgres, app_database, tmp_path)

    def without_pod_logs(role: dict[str, Any]) -> None:
        role["rules"] = [rule for rule in role["rules"] if "pods/log" not in rule.get("resources", [])]

    kubeconfig = operator_account(without_pod_logs)
    start(kube_client, namespace, postgres, app_database)
    with harness.running_operator(installed_crds, namespace, kubeconfig=kubeconfig) as operator:
        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "invoices", {"Succeeded", "Failed"})
        status = body["status"]
        assert status["phase"] == "Succeeded", status
        report = status["plan"]["report"]
        assert report["available"] is False and report["findings"] == len(findings)
        assert report["message"].startswith("the operator may not read the plan Job's log (pods/log)")
        lint = status["plan"]["lint"]
        marker = lint[-1]
        assert marker.startswith("… ") and "the complete report is unavailable: the operator may not read" in marker
        assert len(lint) - 1 + int(marker.split()[1]) == len(findings)  # the count adds up
        warnings = events(kube_client, namespace, "PlanReportUnavailable")
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
        assert f"{len(findings)} lint findings" in warnings[0]["message"]
        assert "Traceback" not in operator.logs()
    assert plan_config_maps(kube_client, namespace) == []


def test_a_failed_lint_keeps_every_finding_too(
        operator: harness.RunningOperator, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str, tmp_path: Path) -> None:
    findings = expected_findings(postgres, app_database, tmp_path)
    start(kube_client, namespace, postgres, app_database, lint={"failOn": "warning"})
    body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "invoices", {"Succeeded", "Failed"})
    status = body["status"]
    assert status["phase"] == "Failed", status
    assert any(condition.get("reason") == "LintFailed" for condition in status["conditions"]), status
    assert status["plan"]["report"]["available"] is True and status["plan"]["report"]["findings"] == len(findings)
    config_map = read_json(client.CoreV1Api(kube_client).read_namespaced_config_map(
        status["plan"]["report"]["configMap"], namespace, _preload_content=False))
    assert json.loads(config_map["data"]["report.json"])["plan"]["lint"] == findings
    assert [c.metadata.name for c in plan_config_maps(kube_client, namespace)] == [config_map["metadata"]["name"]]
    assert postgres.psql("SELECT to_regclass('invoice_lines_1') IS NULL", app_database) == "t"  # nothing applied


def test_a_lost_log_is_said_in_status(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, postgres: PostgresServer, app_database: str,
        tmp_path: Path, node_executor: ProcessNodeExecutor | None) -> None:
    if node_executor is None:
        pytest.skip("removes the plan pod's log files on the simulated node")
    findings = expected_findings(postgres, app_database, tmp_path)
    start(kube_client, namespace, postgres, app_database, approval={"mode": "Manual"})
    with harness.running_operator(installed_crds, namespace):
        job = harness.eventually(lambda: next((j for j in harness.list_jobs(kube_client, namespace)
                                               if j["metadata"]["labels"]["dbops.io/role"] == "plan"), None),
                                 timeout=120, message="the plan Job")
    # The operator is stopped while the plan runs; the node then loses the pod's log (rotated away, disk
    # replaced), as a real node may before the operator comes back.
    name = job["metadata"]["name"]
    harness.eventually(lambda: (read_json(client.BatchV1Api(kube_client).read_namespaced_job_status(
        name, namespace, _preload_content=False)).get("status") or {}).get("succeeded"), timeout=300,
        message="the plan Job to succeed")
    # Had the stopping operator still stored the report, it is gone too: the log is then the only place to look.
    for config_map in plan_config_maps(kube_client, namespace):
        with contextlib.suppress(client.ApiException):
            client.CoreV1Api(kube_client).delete_namespaced_config_map(config_map.metadata.name, namespace)
    pod = harness.list_pods(kube_client, namespace)[0]
    shutil.rmtree(node_executor.work_dir / "pods" / pod["metadata"]["uid"] / "logs")
    with pytest.raises(client.ApiException):
        client.CoreV1Api(kube_client).read_namespaced_pod_log(pod["metadata"]["name"], namespace)
    with harness.running_operator(installed_crds, namespace) as operator:
        def unavailable() -> dict[str, Any] | None:
            body = harness.get_resource(kube_client, namespace, MIGRATION, "invoices") or {}
            status = body.get("status") or {}
            report = (status.get("plan") or {}).get("report") or {}
            return body if status.get("phase") == "AwaitingApproval" and report.get("available") is False else None

        # The status may still be the first operator's: wait for this one's look at the plan.
        body = harness.eventually(unavailable, timeout=180, message="the plan report said to be unavailable")
        plan = body["status"]["plan"]
        assert plan["report"]["available"] is False and plan["report"]["findings"] == len(findings)
        assert plan["report"]["message"] == f"the plan Job {name}'s pod or its log is gone"
        marker = plan["lint"][-1]
        assert len(plan["lint"]) - 1 + int(marker.split()[1]) == len(findings)
        assert marker.endswith(f"(the complete report is unavailable: the plan Job {name}'s pod or its log is gone)")
        harness.eventually(lambda: events(kube_client, namespace, "PlanReportUnavailable"), timeout=60,
                           message="the Warning Event")
        assert "Traceback" not in operator.logs()


def test_a_report_stored_before_the_convention_is_read_from_its_old_config_map(
        installed_crds: ControlPlane, kube_client: Any, namespace: str, postgres: PostgresServer,
        app_database: str) -> None:
    """A migration that planned under an older operator has its report in `<migration>-plan` (role plan-report,
    not immutable): the upgraded operator points status at it and writes no second copy."""
    core = client.CoreV1Api(kube_client)
    start(kube_client, namespace, postgres, app_database, approval={"mode": "Manual"})
    with harness.running_operator(installed_crds, namespace):
        body = harness.wait_for_phase(kube_client, namespace, MIGRATION, "invoices", {"AwaitingApproval", "Failed"})
    plan = body["status"]["plan"]
    [listed] = plan_config_maps(kube_client, namespace)
    current = read_json(core.read_namespaced_config_map(listed.metadata.name, namespace, _preload_content=False))
    meta = current["metadata"]
    # What the older operator left: the same report under the old name and role, the new one not there.
    core.create_namespaced_config_map(namespace, {
        "metadata": {"name": "invoices-plan", "annotations": meta["annotations"],
                     "labels": {**meta["labels"], "dbops.io/role": "plan-report"},
                     "ownerReferences": meta["ownerReferences"]},
        "data": current["data"]}, _preload_content=False)
    core.delete_namespaced_config_map(meta["name"], namespace)
    with harness.running_operator(installed_crds, namespace):
        def legacy() -> dict[str, Any] | None:
            found = harness.get_resource(kube_client, namespace, MIGRATION, "invoices") or {}
            report = ((found.get("status") or {}).get("plan") or {}).get("report") or {}
            return found if report.get("configMap") == "invoices-plan" else None

        body = harness.eventually(legacy, timeout=120, message="status pointing at the old ConfigMap")
        report = body["status"]["plan"]["report"]
        assert report["available"] is True and report["sha256"] == plan["report"]["sha256"]
        assert body["status"]["plan"]["lint"][-1].endswith("more in ConfigMap invoices-plan key findings.txt")
        time.sleep(8)  # more re-checks (--recheck-seconds 5): none writes a copy
        assert plan_config_maps(kube_client, namespace) == [], "the report was written again under the new name"
        assert len(events(kube_client, namespace, "PlanReportStored")) == 1
