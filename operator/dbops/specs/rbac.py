"""Pure builders of the ServiceAccount, Role and RoleBinding a schedule's trigger pod runs as."""

from __future__ import annotations

from typing import Any

from dbops.api.base import GROUP
from dbops.api.kinds import BACKUP, SCHEDULE
from dbops.specs import naming
from dbops.specs.owner import Owner

Manifest = dict[str, Any]


def trigger_account_name(owner: Owner) -> str:
    """Name shared by a schedule's ServiceAccount, Role and RoleBinding."""
    return naming.child_name(owner.name, "trigger")


def _metadata(owner: Owner) -> Manifest:
    return {
        "name": trigger_account_name(owner), "namespace": owner.namespace,
        "labels": owner.labels("trigger"), "ownerReferences": [owner.owner_reference()],
    }


def build_trigger_service_account(owner: Owner) -> Manifest:
    """The ServiceAccount of the trigger pod."""
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(owner)}


def build_trigger_role(owner: Owner) -> Manifest:
    """Rights of the trigger pod: read its schedule, create backups, in its namespace only."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(owner),
        "rules": [
            {"apiGroups": [GROUP], "resources": [SCHEDULE.plural], "resourceNames": [owner.name], "verbs": ["get"]},
            {"apiGroups": [GROUP], "resources": [BACKUP.plural], "verbs": ["create"]},
        ],
    }


def build_trigger_role_binding(owner: Owner, cluster_role: str = "") -> Manifest:
    """Binds the trigger ServiceAccount to its Role, or to the installed trigger ClusterRole when named."""
    name = trigger_account_name(owner)
    role_ref = ({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role} if cluster_role
                else {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name})
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(owner),
        "roleRef": role_ref,
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def trigger_manifests(owner: Owner, cluster_role: str = "") -> list[Manifest]:
    """What a schedule's trigger pod needs, in creation order.

    With `cluster_role` (the chart's and kustomize's trigger ClusterRole, which the operator may only `bind`),
    no Role is written: the operator then needs no right to create Roles with rules of its choosing.
    """
    manifests = [build_trigger_service_account(owner)]
    if not cluster_role:
        manifests.append(build_trigger_role(owner))
    manifests.append(build_trigger_role_binding(owner, cluster_role))
    return manifests
