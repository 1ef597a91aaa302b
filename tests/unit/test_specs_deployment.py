"""The Helm chart and manifests/operator: rendered by the real Helm and kustomize, generated from one source."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dbops.cli import main as cli_main
from dbops.cli import manifests
from dbops.specs import operator_rbac
from dbops_testbed import binaries
from dbops_testbed.binaries import helm_bin

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "dbops"
KUSTOMIZE = ROOT / "manifests" / "operator"
CRD_DIR = ROOT / "crds"
CRD_KEEP = {"helm.sh/resource-policy": "keep"}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_bin()), *args], capture_output=True, text=True, check=check)


def render(*values: str, release: str = "dbops", namespace: str = "dbops-system") -> list[dict[str, Any]]:
    """`helm template` with --set/--set-json style arguments; the documents, parsed."""
    completed = helm("template", release, str(CHART), "--namespace", namespace, *values, check=False)
    assert completed.returncode == 0, completed.stderr
    return [d for d in yaml.safe_load_all(completed.stdout) if d]


def render_error(*values: str) -> str:
    completed = helm("template", "dbops", str(CHART), *values, check=False)
    assert completed.returncode != 0, "rendered although the values are invalid"
    return completed.stderr


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind]
    assert len(found) == 1, [d["metadata"]["name"] for d in found]
    return found[0]


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


@functools.cache
def kustomized() -> tuple[dict[str, Any], ...]:
    text = subprocess.run([str(binaries.testbed_bin() / "kubectl"), "kustomize", str(KUSTOMIZE)],
                          capture_output=True, text=True, check=True).stdout
    return tuple(d for d in yaml.safe_load_all(text) if d)


def test_generated_manifests_are_current() -> None:
    # The CRD copies in the chart and the kustomization are byte-identical to crds/; the RBAC is the builders'.
    assert manifests.stale_files(ROOT) == [], "run `dbops manifests` (or `dbops crds`)"
    for copy in (CHART / "files" / "crds", KUSTOMIZE / "crds"):
        assert {p.name: p.read_bytes() for p in copy.glob("*.yaml")} == \
            {p.name: p.read_bytes() for p in CRD_DIR.glob("*.yaml")}


def test_helm_lint_strict_is_clean() -> None:
    completed = helm("lint", "--strict", str(CHART), check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "[WARNING]" not in completed.stdout and "[ERROR]" not in completed.stdout


def test_chart_templates_the_crds_so_upgrades_reach_them_and_uninstall_keeps_them() -> None:
    assert not (CHART / "crds").exists(), "crds/ is installed once and never upgraded by Helm"
    rendered = {d["metadata"]["name"]: d for d in of_kind(render(), "CustomResourceDefinition")}
    generated = {d["metadata"]["name"]: d for d in (yaml.safe_load(p.read_text()) for p in CRD_DIR.glob("*.yaml"))}
    assert sorted(rendered) == sorted(generated)
    for name, crd in rendered.items():
        assert crd["metadata"].pop("annotations") == CRD_KEEP
        assert crd["metadata"].pop("labels")["app.kubernetes.io/managed-by"] == "Helm"
        assert crd == generated[name]
    assert of_kind(render("--set", "crds.create=false"), "CustomResourceDefinition") == []


@pytest.mark.parametrize(("values", "message"), [
    (("--set", "resources=oops"), "/resources"),
    (("--set", "image.pullPolicy=Sometimes"), "/image/pullPolicy"),
    (("--set", "replicas=2"), "replicas"),
    (("-f", "-"), "/watchNamespaces/0"),
    (("--set", "watchNamespaces={Bad_Name}"), "/watchNamespaces/0"),
    (("--set", "metrics.port=0"), "/metrics/port"),
])
def test_values_schema_rejects_bad_values(values: tuple[str, ...], message: str) -> None:
    stdin = "watchNamespaces: [y, on]\n"  # unquoted: YAML booleans, caught instead of rendered as true
    completed = subprocess.run([str(helm_bin()), "template", "dbops", str(CHART), *values], input=stdin,
                               capture_output=True, text=True, check=False)
    assert completed.returncode != 0 and message in completed.stderr, completed.stderr


def test_default_render_runs_the_operator_restricted_with_standard_labels() -> None:
    documents = render()
    for document in documents:
        labels = document["metadata"]["labels"]
        assert labels["helm.sh/chart"] == "dbops-0.1.0" and labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == "dbops"
    deployment = only(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == only(documents, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    container = pod["containers"][0]
    assert container["image"] == "dbops:0.1.0"  # the tag defaults to the chart's appVersion
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["resources"]["requests"] == {"cpu": "100m", "memory": "128Mi"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] == "health" and ports["health"] == 8081
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    args = cli_main.build_parser("operator").parse_args(container["args"])
    assert args.all_namespaces and args.health_port == 8081 and args.metrics_port == 8080
    assert container["env"] == [{"name": "DBOPS_IMAGE", "value": "dbops:0.1.0"},
                                {"name": "PYTHONMALLOC", "value": "malloc"}, {"name": "MALLOC_ARENA_MAX", "value": "2"}]
    service = only(documents, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()


def test_every_common_option_reaches_the_pod() -> None:
    values = {
        "imagePullSecrets": [{"name": "regcred"}], "podAnnotations": {"team": "db"}, "podLabels": {"tier": "ops"},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}]}}},
        "tolerations": [{"key": "ops", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "ops"}, "priorityClassName": "system-cluster-critical",
        "extraArgs": ["--log-format=plain", "--job-env=TZ=Europe/Berlin"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
        "image": {"repository": "registry.example/dbops", "tag": "1.2.3"},
        "runnerImage": "registry.example/dbops-runner:1.2.3",
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    deployment = only(render("--set-json", f"podAnnotations={json.dumps(values.pop('podAnnotations'))}",
                             *[a for key, value in values.items() for a in ("--set-json", f"{key}={json.dumps(value)}")]),
                      "Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    assert template["metadata"]["annotations"]["team"] == "db" and template["metadata"]["labels"]["tier"] == "ops"
    for key in ("imagePullSecrets", "affinity", "tolerations", "nodeSelector", "priorityClassName"):
        assert pod[key] == values[key], key
    assert pod["securityContext"]["runAsUser"] == 1000
    container = pod["containers"][0]
    assert container["image"] == "registry.example/dbops:1.2.3"
    args = cli_main.build_parser("operator").parse_args(container["args"])
    assert args.log_format == "plain" and args.job_env == ["TZ=Europe/Berlin"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert {"name": "DBOPS_IMAGE", "value": "registry.example/dbops-runner:1.2.3"} in container["env"]
    digest = "sha256:" + "a" * 64
    pinned = only(render("--set", f"image.digest={digest}"), "Deployment")
    assert pinned["spec"]["template"]["spec"]["containers"][0]["image"] == f"dbops@{digest}"


def test_names_follow_fullname_and_name_overrides() -> None:
    names = {d["metadata"]["name"] for d in render(release="prod") if d["kind"] != "CustomResourceDefinition"}
    assert names == {"prod-dbops-operator", "prod-dbops-operator-metrics", "prod-dbops-trigger"}
    documents = render("--set", "fullnameOverride=pg-ops", "--set", "nameOverride=pgops", release="prod")
    assert only(documents, "Deployment")["metadata"]["name"] == "pg-ops-operator"
    assert only(documents, "Deployment")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "pgops"


def test_service_account_and_rbac_can_be_brought_by_the_user() -> None:
    assert "serviceAccount.name is required" in render_error("--set", "serviceAccount.create=false")
    documents = render("--set", "serviceAccount.create=false", "--set", "serviceAccount.name=platform-dbops",
                       "--set", "rbac.create=false")
    assert of_kind(documents, "ServiceAccount") == [] and not [d for d in documents if "Role" in d["kind"]]
    assert only(documents, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "platform-dbops"


def test_cluster_wide_rbac_is_the_builders_rules_with_finalizers() -> None:
    documents = render()
    role = next(d for d in of_kind(documents, "ClusterRole") if d["metadata"]["name"] == "dbops-operator")
    assert role["rules"] == operator_rbac.policy_rules(
        operator_rbac.namespaced_rules("dbops-trigger") + operator_rbac.CLUSTER_RULES)
    assert {"apiGroups": ["dbops.io"], "verbs": ["update"],
            "resources": [f"{k}/finalizers" for k in
                          ("databasebackups", "databasebackupschedules", "databasemigrations", "databaserestores")]
            } in role["rules"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"], "Secrets are read one by one, never listed or watched"
    # Roles with rules of the operator's choosing: none. RoleBindings: only to the trigger ClusterRole (bind).
    assert not any("roles" in rule["resources"] for rule in role["rules"])
    assert {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
            "resourceNames": ["dbops-trigger"], "verbs": ["bind"]} in role["rules"]
    trigger = next(d for d in of_kind(documents, "ClusterRole") if d["metadata"]["name"] == "dbops-trigger")
    assert trigger["rules"] == operator_rbac.policy_rules(operator_rbac.TRIGGER_RULES)
    container = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert cli_main.build_parser("operator").parse_args(container["args"]).trigger_cluster_role == "dbops-trigger"
    binding = only(documents, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dbops-operator", "namespace": "dbops-system"}]


def test_watch_namespaces_gives_a_role_per_namespace_with_names_kept_as_strings() -> None:
    documents = render("--set-json", 'watchNamespaces=["y","on","team-a"]', release="dbops")
    roles = of_kind(documents, "Role")
    assert [r["metadata"]["namespace"] for r in roles] == ["y", "on", "team-a"]
    assert all(r["rules"] == operator_rbac.policy_rules(operator_rbac.namespaced_rules("dbops-trigger"))
               for r in roles)
    bindings = of_kind(documents, "RoleBinding")
    assert [b["metadata"]["namespace"] for b in bindings] == ["y", "on", "team-a"]
    cluster_role = next(d for d in of_kind(documents, "ClusterRole") if d["metadata"]["name"] == "dbops-operator-cluster")
    assert cluster_role["rules"] == operator_rbac.policy_rules(operator_rbac.CLUSTER_RULES)
    assert not any("secrets" in rule["resources"] for rule in cluster_role["rules"])
    container = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = cli_main.build_parser("operator").parse_args(container["args"])
    assert args.namespace == ["y", "on", "team-a"] and not args.all_namespaces


def test_metrics_service_and_service_monitor_are_optional() -> None:
    assert of_kind(render("--set", "metrics.service.enabled=false"), "Service") == []
    monitor = only(render("--set", "metrics.serviceMonitor.enabled=true",
                          "--set", "metrics.serviceMonitor.labels.release=prom"), "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"] == \
        only(render(), "Deployment")["spec"]["selector"]["matchLabels"]


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    """A document without the labels only Helm adds (chart, version, managed-by)."""
    document = json.loads(json.dumps(document))
    for metadata in (document["metadata"], document.get("spec", {}).get("template", {}).get("metadata", {})):
        for key in ("helm.sh/chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                    "app.kubernetes.io/part-of"):
            (metadata.get("labels") or {}).pop(key, None)
        (metadata.get("annotations") or {}).pop("helm.sh/resource-policy", None)
        if metadata.get("annotations") == {}:
            metadata.pop("annotations")
    if document["kind"] == "CustomResourceDefinition":
        document["metadata"].pop("labels")
    return document


def test_kustomize_and_chart_install_the_same_operator() -> None:
    # Same names and immutable selector: a cluster can move from one to the other.
    chart = {(d["kind"], d["metadata"]["name"]): _comparable(d) for d in render()}
    kustomize = {(d["kind"], d["metadata"]["name"]): d for d in kustomized() if d["kind"] != "Namespace"}
    assert sorted(chart) == sorted(kustomize)
    for key, document in kustomize.items():
        assert chart[key] == document, key
    namespace = next(d for d in kustomized() if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
