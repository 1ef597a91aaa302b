"""What a pod refers to: Secret/ConfigMap data and downward-API fields, with `MissingReference` while absent."""

from __future__ import annotations

import base64
import json
import re
from typing import Protocol

from dbops_testbed.objects import JSON


class MissingReference(Exception):
    """A Secret, ConfigMap, ServiceAccount or PVC the pod needs does not exist (yet): wait and retry."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ObjectReader(Protocol):
    """The node's read access to the API objects a pod refers to."""

    node_name: str

    def read_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        """The object as JSON, or None if it does not exist."""
        ...


def key_data(node: ObjectReader, namespace: str, kind: str, name: str, *, optional: bool) -> dict[str, bytes] | None:
    """The decoded data of a Secret or ConfigMap; None if it is absent and optional."""
    obj = node.read_object(kind, namespace, name)
    if obj is None:
        if optional:
            return None
        raise MissingReference("CreateContainerConfigError", f'{kind.lower()} "{name}" not found')
    if kind == "Secret":
        return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
    data = {key: value.encode() for key, value in (obj.get("data") or {}).items()}
    data.update({key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()})
    return data


def field_value(node: ObjectReader, pod: JSON, path: str, *, volume: bool = False) -> str:
    """A downward-API `fieldRef` value (whole label/annotation maps only in volumes, as the kubelet does)."""
    meta = pod["metadata"]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations") and volume:
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f"{key}={json.dumps(value)}" for key, value in sorted(values.items()))
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": node.node_name,
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path not in simple:
        raise MissingReference("CreateContainerConfigError", f"process executor: unsupported fieldPath {path}")
    return str(simple[path])
