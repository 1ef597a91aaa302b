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


def build_trigger_role_binding(owner: Owner) -> Manifest:
    """Binds the trigger Role to the trigger ServiceAccount."""
    name = trigger_account_name(owner)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(owner),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }
