"""The resource that owns the objects the builders make: identity, owner reference and labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbops.api.base import API_VERSION

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "dbops"
KIND_LABEL = "dbops.io/kind"
NAME_LABEL = "dbops.io/name"
ROLE_LABEL = "dbops.io/role"
PARENT_KIND_LABEL = "dbops.io/parent-kind"
PARENT_NAME_LABEL = "dbops.io/parent-name"


@dataclass(frozen=True)
class Owner:
    """Identity of a dbops resource: kind, namespace, name, uid and generation."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int = 1

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        """The owner described by a resource body (as read from the API)."""
        metadata = body["metadata"]
        return cls(
            kind=str(body["kind"]),
            namespace=str(metadata["namespace"]),
            name=str(metadata["name"]),
            uid=str(metadata["uid"]),
            generation=int(metadata.get("generation") or 1),
        )

    def owner_reference(self, *, controller: bool = True) -> dict[str, Any]:
        """An ownerReference to this resource (children are garbage-collected with it)."""
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": controller,
            "blockOwnerDeletion": True,
        }

    def labels(self, role: str) -> dict[str, str]:
        """Labels that tie a child object to this resource and say what it is for."""
        return {
            MANAGED_BY: MANAGER,
            KIND_LABEL: self.kind,
            NAME_LABEL: _label_value(self.name),
            ROLE_LABEL: str(role),
        }

    def parent_labels(self) -> dict[str, str]:
        """Labels a child dbops resource carries to point back at this one."""
        return {MANAGED_BY: MANAGER, PARENT_KIND_LABEL: self.kind, PARENT_NAME_LABEL: _label_value(self.name)}


def _label_value(value: str) -> str:
    """A label value (at most 63 characters, alphanumeric at both ends)."""
    return value[:63].rstrip("-.")
