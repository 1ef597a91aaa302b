"""Reading and writing objects: get, create-or-adopt, apply, delete, list and status patches."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping
from typing import Any

from dbops.kube import session as kube_session
from dbops.kube.resources import resource_type

JSON = dict[str, Any]
NOT_FOUND = 404
CONFLICT = 409
RECENT_KEYS_SECONDS = 10.0
RECENT_KEYS_MAX = 1024
_recent_guard = threading.Lock()
_recent_keys: dict[tuple[str, str], tuple[frozenset[str], float]] = {}
"""The key names (never values) of Secrets read lately, for has_secret_keys."""


def get(kind: str, namespace: str, name: str) -> JSON | None:
    """An object, or None when it does not exist."""
    try:
        return kube_session.session().request("GET", resource_type(kind).path(namespace, name))
    except kube_session.ApiError as error:
        if error.status == NOT_FOUND:
            return None
        raise


def create_or_adopt(manifest: Mapping[str, Any]) -> tuple[JSON, bool]:
    """Create an object; when one of that name exists, return it instead (adopt). True when created."""
    metadata = manifest["metadata"]
    kind = str(manifest["kind"])
    path = resource_type(kind).path(metadata["namespace"])
    try:
        return kube_session.session().request("POST", path, body=manifest), True
    except kube_session.ApiError as error:
        if error.status != CONFLICT:
            raise
    existing = get(kind, metadata["namespace"], metadata["name"])
    if existing is None:
        raise kube_session.ApiError(CONFLICT, f"{kind} {metadata['name']} exists but cannot be read")
    return existing, False


def apply(manifest: Mapping[str, Any]) -> JSON:
    """Create an object or merge-patch the existing one to match the manifest."""
    existing, created = create_or_adopt(manifest)
    if created:
        return existing
    metadata = manifest["metadata"]
    body = {key: value for key, value in manifest.items() if key not in ("apiVersion", "kind", "metadata")}
    body["metadata"] = {"labels": metadata.get("labels") or {}}
    if metadata.get("annotations"):
        body["metadata"]["annotations"] = metadata["annotations"]
    path = resource_type(str(manifest["kind"])).path(metadata["namespace"], metadata["name"])
    return kube_session.session().request("PATCH", path, body=body, content_type="application/merge-patch+json")


def delete(kind: str, namespace: str, name: str, *, propagation: str = "Background",
           resource_version: str | None = None) -> bool:
    """Delete an object (its dependents per propagation); False when it was already gone.

    With ``resource_version``, fail with 409 when the object changed since it was read.
    """
    body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
    if resource_version:
        body["preconditions"] = {"resourceVersion": resource_version}
    try:
        kube_session.session().request("DELETE", resource_type(kind).path(namespace, name), body=body)
    except kube_session.ApiError as error:
        if error.status == NOT_FOUND:
            return False
        raise
    return True


def list_objects(kind: str, namespace: str | None, *, label_selector: str = "") -> list[JSON]:
    """Objects of a kind in a namespace (or everywhere), optionally filtered by labels."""
    query = {"labelSelector": label_selector} if label_selector else None
    answer = kube_session.session().request("GET", resource_type(kind).path(namespace), query=query)
    items: list[JSON] = answer.get("items") or []
    return items


def patch_status(kind: str, namespace: str, name: str, status: Mapping[str, Any], *,
                 resource_version: str | None = None) -> JSON:
    """Merge-patch the status subresource; with resource_version, fail with 409 when the object changed."""
    body: JSON = {"status": dict(status)}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    path = resource_type(kind).path(namespace, name, "status")
    return kube_session.session().request("PATCH", path, body=body, content_type="application/merge-patch+json")


def secret_value(namespace: str, name: str, key: str) -> str | None:
    """One key of a Secret, decoded (None when the Secret or key is missing). Callers never log or show it."""
    secret = get("Secret", namespace, name)
    if secret is None:
        return None
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    data = (secret.get("data") or {}).get(key)
    return base64.b64decode(data).decode("utf-8", errors="replace") if data is not None else None


def secret_keys(namespace: str, name: str) -> set[str] | None:
    """The key names of a Secret (never its values), or None when it does not exist."""
    secret = get("Secret", namespace, name)
    if secret is None:
        with _recent_guard:
            _recent_keys.pop((namespace, name), None)
        return None
    keys = set((secret.get("data") or {}).keys()) | set((secret.get("stringData") or {}).keys())
    with _recent_guard:
        if len(_recent_keys) >= RECENT_KEYS_MAX:
            _recent_keys.clear()
        _recent_keys[(namespace, name)] = (frozenset(keys), time.monotonic())
    return keys


def has_secret_keys(namespace: str, name: str, wanted: set[str], *, within: float = RECENT_KEYS_SECONDS) -> bool:
    """Whether a Secret read less than ``within`` seconds ago had every wanted key (False: read it again).

    A burst of 5,000 backups naming the same two Secrets read them 10,000 times (bench/README.md, P7). Only
    a positive answer is remembered, and briefly: a Secret created or fixed since is seen at once; one deleted
    since shows as the Job's pod failing to start (pod_start) instead of a MissingReference condition."""
    with _recent_guard:
        entry = _recent_keys.get((namespace, name))
    return entry is not None and time.monotonic() - entry[1] < within and wanted <= entry[0]
