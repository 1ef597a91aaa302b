"""The resource types the operator touches, and their REST paths."""

from __future__ import annotations

from dataclasses import dataclass

from dbops.api.base import API_VERSION
from dbops.api.kinds import ALL_KINDS


@dataclass(frozen=True)
class ResourceType:
    """An API resource: group/version and plural."""

    api_version: str
    kind: str
    plural: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path of the collection, an object or one of its subresources."""
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{prefix}/namespaces/{namespace}/{self.plural}" if namespace else f"{prefix}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


_TYPES = [
    ResourceType("batch/v1", "Job", "jobs"),
    ResourceType("batch/v1", "CronJob", "cronjobs"),
    ResourceType("v1", "Pod", "pods"),
    ResourceType("v1", "Secret", "secrets"),
    ResourceType("v1", "ConfigMap", "configmaps"),
    ResourceType("v1", "ServiceAccount", "serviceaccounts"),
    ResourceType("v1", "Event", "events"),
    ResourceType("rbac.authorization.k8s.io/v1", "Role", "roles"),
    ResourceType("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings"),
    ResourceType("coordination.k8s.io/v1", "Lease", "leases"),
    *(ResourceType(API_VERSION, kind.kind, kind.plural) for kind in ALL_KINDS),
]
BY_KIND = {t.kind: t for t in _TYPES}


def resource_type(kind: str) -> ResourceType:
    """The resource type of a kind."""
    return BY_KIND[kind]
