"""One HTTP session to the Kubernetes API server (kubeconfig or in-cluster), returning plain JSON."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from dbops import errors

JSON = dict[str, Any]
POOL_SIZE = 32
TIMEOUT_SECONDS = 30.0


class ApiError(errors.TransientError):
    """The API server answered with an error status."""

    reason = "ApiError"

    def __init__(self, status: int, message: str, api_reason: str = "") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.api_reason = api_reason


class KubeSession:
    """A thread-safe connection pool to one API server."""

    def __init__(self, configuration: k8s_client.Configuration) -> None:
        self._configuration = configuration
        self.host = str(configuration.host).rstrip("/")
        options: dict[str, Any] = {"maxsize": POOL_SIZE, "block": False}
        if configuration.verify_ssl:
            options["cert_reqs"] = "CERT_REQUIRED"
            if configuration.ssl_ca_cert:
                options["ca_certs"] = configuration.ssl_ca_cert
        else:
            options["cert_reqs"] = "CERT_NONE"
        if configuration.cert_file:
            options["cert_file"] = configuration.cert_file
        if configuration.key_file:
            options["key_file"] = configuration.key_file
        self._pool = urllib3.PoolManager(num_pools=4, **options)

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: Any = None,
                content_type: str = "application/json") -> JSON:
        """Send a request and return the decoded JSON answer; raise ApiError for error statuses."""
        url = self.host + path + (("?" + urlencode(query)) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type, "User-Agent": "dbops-operator"}
        token = self._configuration.get_api_key_with_prefix("authorization") or self._configuration.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = token
        data = json.dumps(body).encode() if body is not None else None
        response = self._pool.request(method, url, body=data, headers=headers,
                                      timeout=urllib3.Timeout(total=TIMEOUT_SECONDS), retries=False)
        payload: JSON = {}
        if response.data:
            try:
                payload = json.loads(response.data)
            except ValueError:
                payload = {"message": response.data[:200].decode(errors="replace")}
        if response.status >= 400:
            raise ApiError(response.status, str(payload.get("message") or ""), str(payload.get("reason") or ""))
        return payload


_lock = threading.Lock()
_session: KubeSession | None = None


def configure(kubeconfig: str | None = None) -> KubeSession:
    """Load credentials (a kubeconfig, $KUBECONFIG or the in-cluster service account) and open the session."""
    global _session
    configuration = k8s_client.Configuration()
    if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    with _lock:
        _session = KubeSession(configuration)
    return _session


def session() -> KubeSession:
    """The configured session (configured from the environment on first use)."""
    with _lock:
        current = _session
    return current if current is not None else configure()
