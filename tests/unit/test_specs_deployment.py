"""Deployment artifacts: the Helm chart matches the plain manifests and the generated CRDs; RBAC is least privilege."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "manifests" / "operator" / "rbac.yaml"


def cluster_role_rules() -> list[dict[str, list[str]]]:
    documents = list(yaml.safe_load_all(RBAC.read_text()))
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    rules: list[dict[str, list[str]]] = role["rules"]
    return rules


def test_chart_crds_are_the_generated_crds() -> None:
    chart = {p.name: p.read_text() for p in (ROOT / "helm" / "dbops" / "crds").glob("*.yaml")}
    generated = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert chart == generated, "copy crds/*.yaml into helm/dbops/crds/"


def test_chart_rbac_rules_are_the_manifest_rules() -> None:
    template = (ROOT / "helm" / "dbops" / "templates" / "rbac.yaml").read_text()
    rules_text = template.split("{{- $rules := `", 1)[1].split("`", 1)[0]
    assert yaml.safe_load(rules_text) == cluster_role_rules()


def test_operator_rbac_has_no_wildcards_and_never_lists_secrets() -> None:
    for rule in cluster_role_rules():
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"]


def test_operator_deployment_is_restricted() -> None:
    deployment = next(d for d in yaml.safe_load_all((ROOT / "manifests" / "operator" / "deployment.yaml").read_text())
                      if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["args"][0] == "operator"
