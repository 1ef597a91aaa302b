"""Argo CD health checks: run manifests/argocd Lua in a real Lua 5.1 (as Argo CD's gopher-lua) and render argocd-cm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHECKS_DIR = ROOT / "manifests" / "argocd" / "dbops.io"
TESTDATA_DIR = ROOT / "tests" / "data" / "argocd"
ARGOCD_CM = ROOT / "manifests" / "argocd" / "argocd-cm.yaml"
HELM_TEMPLATE = ROOT / "helm" / "dbops" / "templates" / "argocd-cm-health.yaml"
KINDS = ("DatabaseBackup", "DatabaseBackupSchedule", "DatabaseMigration", "DatabaseRestore")
HEALTH_STATES = {"Healthy", "Progressing", "Suspended", "Degraded", "Missing", "Unknown"}


def script(kind: str) -> str:
    """The health.lua of a kind."""
    return (CHECKS_DIR / kind / "health.lua").read_text()


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({key: _to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Evaluate a kind's health.lua with ``obj`` as Argo CD does: the script sees a global ``obj``."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(script(kind))
    answer = {"status": str(result["status"]), "message": str(result["message"] or "")}
    if answer["status"] not in HEALTH_STATES:
        raise AssertionError(f"{kind} health.lua returned an unknown status {answer['status']!r}")
    return answer


def _literal_block(text: str, indent: str) -> str:
    return "\n".join(indent + line if line else "" for line in text.rstrip("\n").splitlines())


def customizations(indent: str) -> str:
    """The argocd-cm data entries, one literal block per kind."""
    return "\n".join(f"{indent}resource.customizations.health.dbops.io_{kind}: |\n"
                     f"{_literal_block(script(kind), indent + '  ')}" for kind in KINDS) + "\n"


def render_argocd_cm() -> str:
    """manifests/argocd/argocd-cm.yaml: a patch for Argo CD's argocd-cm ConfigMap."""
    return ("# Generated from manifests/argocd/dbops.io/*/health.lua (tests/unit/test_argocd_health.py checks it).\n"
            "# Merge into Argo CD's argocd-cm, e.g. kubectl -n argocd patch configmap argocd-cm --patch-file this,\n"
            "# or paste the data entries into the argo-cd Helm chart's configs.cm.\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n"
            "  labels:\n    app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\n"
            "data:\n" + customizations("  "))


def render_helm_template() -> str:
    """helm/dbops/templates/argocd-cm-health.yaml: the same ConfigMap, only with argocd.healthChecks.enabled."""
    return ("{{- if .Values.argocd.healthChecks.enabled }}\n"
            "# Generated from manifests/argocd/dbops.io/*/health.lua (tests/unit/test_argocd_health.py checks it).\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n"
            "  namespace: {{ .Values.argocd.healthChecks.namespace }}\n"
            "  labels:\n    app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\n"
            "data:\n" + customizations("  ") + "{{- end }}\n")


def load_cases(kind: str) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(case name, expected health, captured object) from tests/data/argocd/<kind>/health_test.yaml."""
    folder = TESTDATA_DIR / kind
    tests = yaml.safe_load((folder / "health_test.yaml").read_text())["tests"]
    return [(Path(test["inputPath"]).stem, test["healthStatus"], yaml.safe_load((folder / test["inputPath"]).read_text()))
            for test in tests]
