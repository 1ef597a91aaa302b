"""Alert rules (promtool test rules on synthetic series), the PrometheusRule copy and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests import argocd, monitoring

from dbops_testbed.binaries import helm_bin


def test_alert_rules_fire_on_synthetic_series() -> None:
    result = subprocess.run([monitoring.promtool(), "test", "rules", monitoring.RULES_TEST.name],
                            cwd=monitoring.RULES_TEST.parent, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_file_passes_promtool_check() -> None:
    result = subprocess.run([monitoring.promtool(), "check", "rules", str(monitoring.RULES)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_exercised_by_the_rules_test() -> None:
    alerts = {rule["alert"] for group in monitoring.rule_groups() for rule in group["rules"]}
    tested = {case["alertname"] for test in yaml.safe_load(monitoring.RULES_TEST.read_text())["tests"]
              for case in test.get("alert_rule_test", [])}
    assert alerts == tested
    fired = {case["alertname"] for test in yaml.safe_load(monitoring.RULES_TEST.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert fired == alerts, "every alert needs a case where it fires"


@pytest.mark.parametrize(("path", "rendered"), [
    (monitoring.PROMETHEUS_RULE, monitoring.render_prometheus_rule),
    (monitoring.CHART_FILES / "dbops-rules.yaml", lambda: monitoring.RULES.read_text()),
    (monitoring.CHART_FILES / "grafana-dashboard.json", lambda: monitoring.DASHBOARD.read_text()),
], ids=["prometheusrule", "chart-rules", "chart-dashboard"])
def test_generated_copies_match(path: Path, rendered: Callable[[], str]) -> None:
    text = rendered()
    if os.environ.get("DBOPS_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.read_text() == text, f"{path} is stale; run DBOPS_UPDATE_GOLDEN=1 pytest tests/unit"


def test_prometheus_rule_holds_the_plain_rules() -> None:
    body = yaml.safe_load(monitoring.PROMETHEUS_RULE.read_text())
    assert body["kind"] == "PrometheusRule" and body["spec"]["groups"] == monitoring.rule_groups()


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    board = json.loads(monitoring.DASHBOARD.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) and board["uid"] == "dbops-overview"
    titles = " ".join(panel["title"] for panel in board["panels"])
    for subject in ("Backup size", "Backup duration", "Age of the newest successful backup", "Migration", "Restore"):
        assert subject in titles


def test_every_dashboard_query_parses_with_promtool() -> None:
    exprs = monitoring.dashboard_exprs()
    assert len(exprs) >= 15
    result = monitoring.check_exprs_parse(exprs)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_query_is_caught_by_the_parse_check() -> None:
    result = monitoring.check_exprs_parse([("broken", "sum by (namespace (dbops_backup_size_bytes)")])
    assert result.returncode != 0


def test_chart_templates_are_gated_by_values() -> None:
    templates = monitoring.ROOT / "helm" / "dbops" / "templates"
    rule = (templates / "monitoring-prometheusrule.yaml").read_text()
    board = (templates / "monitoring-dashboard.yaml").read_text()
    assert rule.startswith("{{- if .Values.monitoring.prometheusRule.enabled }}")
    assert board.startswith("{{- if .Values.monitoring.grafanaDashboard.enabled }}")
    assert '.Files.Get "files/dbops-rules.yaml"' in rule and '.Files.Get "files/grafana-dashboard.json"' in board
    values = yaml.safe_load((monitoring.ROOT / "helm" / "dbops" / "values.yaml").read_text())
    assert values["monitoring"]["prometheusRule"]["enabled"] is False
    assert values["monitoring"]["grafanaDashboard"]["enabled"] is False


def _helm_template(*values: str) -> list[dict[str, Any]]:
    chart = monitoring.ROOT / "helm" / "dbops"
    completed = subprocess.run([str(helm_bin()), "template", "dbops", str(chart), "--namespace", "dbops-system",
                                *values], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr
    return [d for d in yaml.safe_load_all(completed.stdout) if d]


def test_chart_renders_rules_dashboard_and_argocd_health_only_when_enabled() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in _helm_template()}
    assert ("PrometheusRule", "dbops-dbops") not in kinds and ("ConfigMap", "argocd-cm") not in kinds
    documents = _helm_template("--set", "monitoring.prometheusRule.enabled=true",
                               "--set", "monitoring.grafanaDashboard.enabled=true",
                               "--set", "argocd.healthChecks.enabled=true")
    rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == monitoring.rule_groups()
    board = next(d for d in documents if d["kind"] == "ConfigMap" and "dbops-overview.json" in d.get("data", {}))
    assert json.loads(board["data"]["dbops-overview.json"]) == monitoring.dashboard()
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    argocd_cm = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "argocd-cm")
    assert argocd_cm["metadata"]["namespace"] == "argocd"
    assert argocd_cm["data"] == yaml.safe_load(argocd.ARGOCD_CM.read_text())["data"]
