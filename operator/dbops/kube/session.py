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


FORBIDDEN = 403
CONFLICT = 409
TOO_MANY_REQUESTS = 429
UNAVAILABLE = 503
REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           410: "Gone", 413: "RequestTooLarge", 415: "UnsupportedMediaType", 422: "Invalid"}


def is_permanent(status: int) -> bool:
    """Whether an HTTP status means retrying the same request cannot help: 4xx other than 409 and 429."""
    return 400 <= status < 500 and status not in (CONFLICT, TOO_MANY_REQUESTS)


class ApiError(errors.DbopsError):
    """The API server answered with an error status, or could not be reached (status 0).

    Construct it with ``ApiError(status, …)``: the instance is an ``ApiRejectedError`` (permanent) or an
    ``ApiUnavailableError`` (transient) according to ``is_permanent``, so callers can catch either by class.
    """

    reason = "ApiError"

    def __new__(cls, status: int, message: str, api_reason: str = "") -> ApiError:
        if cls is ApiError:
            cls = ApiRejectedError if is_permanent(status) else ApiUnavailableError
        return super().__new__(cls)

    def __init__(self, status: int, message: str, api_reason: str = "") -> None:
        reason = REASONS.get(status, "Rejected") if is_permanent(status) else "ApiUnavailable"
        super().__init__(f"HTTP {status}: {message}" if status else message, reason=reason)
        self.status = status
        self.api_reason = api_reason
        self.detail = message

    @property
    def permanent(self) -> bool:
        """Whether retrying the request cannot help."""
        return is_permanent(self.status)


class ApiRejectedError(ApiError, errors.PermanentError):
    """The API server refused the request for what it is (400, 403, 404, 422…): retrying cannot help."""


class ApiUnavailableError(ApiError, errors.TransientError):
    """A conflict, throttling, a server error or no answer at all: the same request may succeed later."""


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
        data = json.dumps(body).encode() if body is not None else None
        response = self._send(method, path, query, data, {"Accept": "application/json", "Content-Type": content_type})
        payload = _decode(response.data)
        if response.status >= 400:
            raise ApiError(response.status, str(payload.get("message") or ""), str(payload.get("reason") or ""))
        return payload

    def read_bytes(self, path: str, *, query: Mapping[str, str] | None = None, max_bytes: int) -> bytes:
        """GET a non-JSON answer (a pod's log), at most `max_bytes` of it whatever the server sends."""
        response = self._send("GET", path, query, None, {"Accept": "*/*"}, preload=False)
        try:
            if response.status >= 400:
                payload = _decode(response.read(64 * 1024))
                raise ApiError(response.status, str(payload.get("message") or ""), str(payload.get("reason") or ""))
            chunks: list[bytes] = []
            size = 0
            while size < max_bytes:
                chunk = response.read(min(64 * 1024, max_bytes - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        except urllib3.exceptions.HTTPError as error:
            raise ApiError(0, f"GET {self.host}{path}: the answer broke off: {type(error).__name__}") from None
        finally:
            response.release_conn()

    def _send(self, method: str, path: str, query: Mapping[str, str] | None, data: bytes | None,
              headers: dict[str, str], *, preload: bool = True) -> Any:
        url = self.host + path + (("?" + urlencode(query)) if query else "")
        headers = {**headers, "User-Agent": "dbops-operator"}
        token = self._configuration.get_api_key_with_prefix("authorization") or self._configuration.get_api_key_with_prefix("BearerToken")
        if token:
            headers["Authorization"] = token
        try:
            return self._pool.request(method, url, body=data, headers=headers, preload_content=preload,
                                      timeout=urllib3.Timeout(total=TIMEOUT_SECONDS), retries=False)
        except urllib3.exceptions.HTTPError as error:  # timeouts, refused or reset connections
            raise ApiError(0, f"{method} {self.host}{path}: the API server did not answer: {type(error).__name__}"
                           ) from None


def _decode(data: bytes) -> JSON:
    """A JSON answer, or the start of a non-JSON one as its message."""
    if not data:
        return {}
    try:
        payload: JSON = json.loads(data)
    except ValueError:
        return {"message": data[:200].decode(errors="replace")}
    return payload if isinstance(payload, dict) else {"message": str(payload)[:200]}


_lock = threading.Lock()
_session: KubeSession | None = None


def configure(kubeconfig: str | None = None) -> KubeSession:
    """Load credentials (a kubeconfig, $KUBECONFIG or the in-cluster service account) and open the session."""
    global _session
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or (
            "~/.kube/config" if not os.environ.get("KUBERNETES_SERVICE_HOST") else "the in-cluster service account")
        raise errors.InvalidSpecError(f"kubeconfig {where}: {error}") from None
    with _lock:
        _session = KubeSession(configuration)
    return _session


def session() -> KubeSession:
    """The configured session (configured from the environment on first use)."""
    with _lock:
        current = _session
    return current if current is not None else configure()
