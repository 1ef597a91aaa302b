"""The operator's own RBAC rules, each with its reason: the one source of the chart's and kustomize's RBAC."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import yaml

from dbops.api.base import GROUP
from dbops.api.kinds import ALL_KINDS, BACKUP, SCHEDULE

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """One PolicyRule and why the operator needs it."""

    reason: str
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...] = ()

    def policy_rule(self) -> Manifest:
        """The rule as the RBAC API spells it."""
        rule: Manifest = {"apiGroups": list(self.api_groups), "resources": list(self.resources)}
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        rule["verbs"] = list(self.verbs)
        return rule


_PLURALS = tuple(kind.plural for kind in ALL_KINDS)

_NAMESPACED_RULES: tuple[Rule, ...] = (
    Rule("Kopf watches the four kinds; the operator creates child backups (pre-migration, safety) and restores "
         "(rollback), patches Kopf's finalizer and progress annotations, and deletes children it replaces.",
         (GROUP,), _PLURALS, ("get", "list", "watch", "create", "patch", "delete")),
    Rule("Status is the operator's output: patched by Kopf and the driver, replaced when a stale status is reset.",
         (GROUP,), tuple(f"{p}/status" for p in _PLURALS), ("get", "patch", "update")),
    Rule("Jobs and CronJobs carry ownerReferences with blockOwnerDeletion to the dbops resource; clusters with "
         "OwnerReferencesPermissionEnforcement (OpenShift) require update on the owner's finalizers subresource.",
         (GROUP,), tuple(f"{p}/finalizers" for p in _PLURALS), ("update",)),
    Rule("Every backup, restore, migration and check runs as a Job the operator creates, watches and deletes "
         "(superseded or aborted runs), and patches to hand it the user's ttlSecondsAfterFinished once its result "
         "is recorded in status.",
         ("batch",), ("jobs",), ("get", "list", "watch", "create", "patch", "delete")),
    Rule("A DatabaseBackupSchedule is a CronJob (created, then kept in sync by merge patch).",
         ("batch",), ("cronjobs",), ("get", "create", "patch")),
    Rule("A failed Job's pods hold the termination message and exit code the status reports.",
         ("",), ("pods",), ("get", "list")),
    Rule("Plan Jobs' pod logs, only read (bounded by limitBytes): command mode's framework plan is its plan Job's "
         "log (the user's image writes no result file); a SQL plan Job prints the complete plan report (every lint "
         "finding, beyond the 4 KiB termination message), which the operator copies into <migration>-plan.",
         ("",), ("pods/log",), ("get",)),
    Rule("Referenced Secrets are read one by one to check that the named keys exist before a Job starts (a clear "
         "condition instead of a pod stuck in CreateContainerConfigError); never listed or watched.",
         ("",), ("secrets",), ("get",)),
    Rule("Migration sources are read from ConfigMaps; the operator creates ConfigMaps, never changing one: the "
         "source snapshot and the plan ConfigMaps (<migration>-plan-<hash>, immutable: the complete plan report "
         "or command output).",
         ("",), ("configmaps",), ("get", "create")),
    Rule("A schedule's trigger pod runs as its own ServiceAccount (created per schedule, labels kept in sync).",
         ("",), ("serviceaccounts",), ("get", "create", "patch")),
    Rule("Warning and Normal Events on the resources.",
         ("",), ("events",), ("create",)),
    Rule("The run lock of a command-mode migration: one Lease per target database, created to take it, read to "
         "see who holds it, deleted (guarded by its resourceVersion) to free it or take over a finished holder's.",
         ("coordination.k8s.io",), ("leases",), ("get", "create", "delete")),
    Rule("A schedule's trigger ServiceAccount is bound to the trigger ClusterRole by a RoleBinding in the "
         "schedule's namespace (created, labels kept in sync). No Roles: the operator writes no rules.",
         ("rbac.authorization.k8s.io",), ("rolebindings",), ("get", "create", "patch")),
)


def namespaced_rules(trigger_cluster_role: str) -> tuple[Rule, ...]:
    """What the operator needs in each namespace it watches."""
    return (*_NAMESPACED_RULES, Rule(
        "The API server lets the operator create those RoleBindings because it may bind exactly this one "
        "ClusterRole (resourceNames), not because it holds the rights itself.",
        ("rbac.authorization.k8s.io",), ("clusterroles",), ("bind",), (trigger_cluster_role,)))


TRIGGER_RULES: tuple[Rule, ...] = (
    Rule("`dbops trigger backup` reads its schedule's backup template.",
         (GROUP,), (SCHEDULE.plural,), ("get",)),
    Rule("... and creates one DatabaseBackup per scheduled time.",
         (GROUP,), (BACKUP.plural,), ("create",)),
)
"""The trigger ClusterRole (bound per schedule, in the schedule's namespace only)."""

CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("Kopf checks at start-up that the CRDs it serves are installed.",
         ("apiextensions.k8s.io",), ("customresourcedefinitions",), ("get", "list", "watch")),
    Rule("Kopf follows namespaces to start and stop its per-namespace watches.",
         ("",), ("namespaces",), ("get", "list", "watch")),
)


def rules_yaml(rules: tuple[Rule, ...]) -> str:
    """The rules as a YAML list, each preceded by its reason as a comment (for the chart and kustomize)."""
    lines: list[str] = []
    for rule in rules:
        lines += [f"# {line}" for line in textwrap.wrap(rule.reason, 106)]
        text = yaml.safe_dump([rule.policy_rule()], default_flow_style=None, sort_keys=False, width=200)
        lines.append(text.rstrip("\n"))
    return "\n".join(lines) + "\n"


def policy_rules(rules: tuple[Rule, ...]) -> list[Manifest]:
    """The rules as the RBAC API spells them."""
    return [rule.policy_rule() for rule in rules]


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line if line.strip() else line for line in text.splitlines(keepends=True))


def kustomize_rbac(*, name: str, namespace: str, labels: dict[str, str], trigger_cluster_role: str) -> str:
    """manifests/operator/rbac.yaml: the operator's ClusterRole (every namespace) and binding, the trigger's."""
    label_text = _indent(yaml.safe_dump(labels, sort_keys=True), 4)
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
    return (
        "# Generated by `dbops manifests` from operator/dbops/specs/operator_rbac.py: do not edit.\n"
        "# Least privilege for `dbops operator --all-namespaces`; no wildcards. To confine the operator to some\n"
        "# namespaces, use the Helm chart's watchNamespaces (a Role per namespace instead of this ClusterRole).\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n"
        f"  name: {name}\n  labels:\n{label_text}rules:\n"
        + _indent(rules_yaml(namespaced_rules(trigger_cluster_role) + CLUSTER_RULES), 2)
        + "---\n" + yaml.safe_dump(binding, sort_keys=False)
        + "---\n# Bound per DatabaseBackupSchedule to its trigger ServiceAccount (dbops operator --trigger-cluster-role).\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n"
        f"  name: {trigger_cluster_role}\n  labels:\n{label_text}rules:\n"
        + _indent(rules_yaml(TRIGGER_RULES), 2)
    )
