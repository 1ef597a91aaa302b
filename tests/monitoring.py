"""The alert rules and the Grafana dashboard: their queries, the metrics they use, and promtool runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "manifests" / "monitoring"
RULES = MONITORING / "dbops-rules.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES_TEST = ROOT / "tests" / "data" / "monitoring" / "rules_test.yaml"
CHART_FILES = ROOT / "helm" / "dbops" / "files"
# Names the operator exports (up comes from Prometheus itself).
OWN_METRIC = re.compile(r"\b((?:dbops|controller_runtime)_[a-zA-Z0-9_]+)\b")
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m", "$namespace": ".*"}


def promtool() -> str:
    """The promtool binary (Debian's prometheus package, installed by scripts/setup)."""
    found = shutil.which("promtool")
    if found is None:
        raise RuntimeError("promtool is missing: run scripts/setup (it installs Debian's prometheus package)")
    return found


def rule_groups() -> list[dict[str, Any]]:
    """The groups of the plain rules file."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def render_prometheus_rule() -> str:
    """manifests/monitoring/prometheusrule.yaml: the same groups as a Prometheus Operator PrometheusRule."""
    body = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "dbops", "namespace": "dbops-system",
                         "labels": {"app.kubernetes.io/name": "dbops", "app.kubernetes.io/component": "alerts"}},
            "spec": {"groups": rule_groups()}}
    return ("# Generated from dbops-rules.yaml (tests/unit/test_monitoring.py checks it); add the labels your\n"
            "# Prometheus' ruleSelector expects.\n" + yaml.safe_dump(body, sort_keys=False, width=1000))


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard."""
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target and of query variables."""
    exprs = [(panel["title"], target["expr"]) for panel in dashboard()["panels"]
             for target in panel.get("targets", [])]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert match, variable
            exprs.append((f"variable {variable['name']}", match.group(1)))
    return exprs


def without_grafana_variables(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced by values Prometheus accepts."""
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    return expr


def dashboard_metrics() -> set[str]:
    """The operator's metric names the dashboard queries."""
    return {name for _, expr in dashboard_exprs() for name in OWN_METRIC.findall(expr)}


def rule_metrics() -> set[str]:
    """The operator's metric names the alert rules query."""
    return {name for group in rule_groups() for rule in group["rules"] for name in OWN_METRIC.findall(rule["expr"])}


def check_exprs_parse(exprs: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """Run `promtool check rules` on a rules file recording every expression (promtool parses each)."""
    rules = [{"record": f"dbops:dashboard_query_{index}", "expr": without_grafana_variables(expr)}
             for index, (_, expr) in enumerate(exprs)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, handle)
    try:
        return subprocess.run([promtool(), "check", "rules", handle.name], capture_output=True, text=True, check=False)
    finally:
        Path(handle.name).unlink()


def exported_families(text: str) -> set[str]:
    """Metric names a /metrics page offers, including _bucket/_sum/_count of histograms and _total of counters."""
    names: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"# TYPE (\S+) (\w+)", line)
        if match:
            name, kind = match.groups()
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names
