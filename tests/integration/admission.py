"""Ask the real API server whether it admits a spec: server-side dry-run creates, no object stored."""

from __future__ import annotations

import json
from typing import Any

from dbops.api.base import API_VERSION, GROUP, VERSION
from dbops.api.kinds import ALL_KINDS

PLURALS = {kind.kind: kind.plural for kind in ALL_KINDS}


class Admission:
    """Dry-run creates of dbops resources in one namespace, through one kubernetes ApiClient."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self._api: Any = client.CustomObjectsApi(api_client)
        self._namespace = namespace

    def verdict(self, kind: str, spec: Any, name: str = "fuzz") -> tuple[bool, str]:
        """(admitted, the API server's message when refused) for a resource of ``kind`` with ``spec``."""
        admitted, message, _ = self.stored(kind, spec, name)
        return admitted, message

    def stored(self, kind: str, spec: Any, name: str = "fuzz") -> tuple[bool, str, dict[str, Any]]:
        """The verdict and, when admitted, the spec as it would be stored (defaults applied, nulls pruned)."""
        from kubernetes.client.exceptions import ApiException

        body = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
        try:
            response = self._api.create_namespaced_custom_object(GROUP, VERSION, self._namespace, PLURALS[kind],
                                                                 body, dry_run="All", _preload_content=False)
        except ApiException as error:
            if error.status not in (400, 422):
                raise
            return False, _message(error.body), {}
        stored: dict[str, Any] = json.loads(response.data)["spec"]
        return True, "", stored


def _message(body: Any) -> str:
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return str(body)
