"""The node's kubelet API over HTTPS, read-only: container logs (`kubectl logs`, `pods/log`) and `/healthz`."""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dbops_testbed import container_logs

logger = logging.getLogger(__name__)

FOLLOW_POLL_SECONDS = 0.2


class LogSource:
    """What the server asks the node about a container: its log files, and whether it may still write."""

    def __init__(self, locate: Callable[[str, str], Path | None],
                 running: Callable[[str, str, str], bool]) -> None:
        self.locate = locate
        self.running = running


class HttpError(Exception):
    """An error answer, as the kubelet writes them: a status code and a plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KubeletServer:
    """An HTTPS server playing the kubelet's read-only API for one node (the API server proxies `pods/log` to it).

    As a kubelet left with its defaults: a self-signed serving certificate (the API server, without
    `--kubelet-certificate-authority`, does not verify it); clients authenticate with a certificate from the
    cluster CA (`client_ca_file`, the kubelet's `--client-ca-file`), and each request is authorized by a
    SubjectAccessReview (`authorize(user, groups)`, webhook mode: `get` on `nodes/proxy` for `/containerLogs`).
    """

    def __init__(self, node_name: str, work_dir: Path, logs: LogSource, *, client_ca_file: str | None,
                 authorize: Callable[[str, list[str], str], str | None]) -> None:
        self.node_name = node_name
        self.logs = logs
        self.authorize = authorize
        cert, key = _self_signed(work_dir, node_name)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        if client_ca_file:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cafile=client_ca_file)
        server = self
        handler = type("Handler", (_Handler,), {"kubelet": server})
        self.httpd = _TLSServer(("127.0.0.1", 0), handler, self.context)
        self.port: int = self.httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> KubeletServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="dbops-kubelet-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the request's own thread: a slow client never blocks accepting others.
        request.settimeout(30)
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("kubelet API request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    kubelet: KubeletServer
    server_version = "dbops-process-executor"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("kubelet API: " + format, *args)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            if url.path in ("/healthz", "/healthz/"):
                return self._answer(200, b"ok")
            parts = url.path.split("/")
            if len(parts) == 5 and parts[1] == "containerLogs":
                self._authorize("proxy")
                return self._container_logs(parts[2], parts[3], parts[4], query)
            raise HttpError(404, "404 page not found")
        except HttpError as error:
            self._answer(error.status, error.message.encode())

    def _authorize(self, subresource: str) -> None:
        certificate = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not certificate:
            if self.kubelet.context.verify_mode == ssl.CERT_REQUIRED:
                raise HttpError(401, "Unauthorized")
            return
        user, groups = "", []
        for rdn in certificate.get("subject", ()):
            for key, value in rdn:  # type: ignore[str-unpack]  # typeshed types a subject loosely
                if key == "commonName":
                    user = value
                elif key == "organizationName":
                    groups.append(value)
        denial = self.kubelet.authorize(user, [*groups, "system:authenticated"], subresource)
        if denial is not None:
            raise HttpError(403, f"Forbidden (user={user}, verb=get, resource=nodes, subresource={subresource})"
                                 f"{': ' + denial if denial else ''}")

    def _container_logs(self, namespace: str, pod: str, container: str, query: dict[str, str]) -> None:
        pod_dir = self.kubelet.logs.locate(namespace, pod)
        if pod_dir is None:
            raise HttpError(404, f'pod "{pod}" in namespace "{namespace}" not found')
        files = container_logs.attempts(pod_dir, container)
        if not files:
            raise HttpError(404, f'container "{container}" in pod "{pod}" is not available')
        previous = _flag(query, "previous")
        if previous and len(files) < 2:
            raise HttpError(400, f'previous terminated container "{container}" in pod "{pod}" not found')
        path = files[-2] if previous else files[-1]
        limit = _number(query, "limitBytes")
        tail = _number(query, "tailLines")
        since = None
        if "sinceTime" in query:
            try:
                since = container_logs.parse_time(query["sinceTime"])
            except ValueError as error:
                raise HttpError(400, f"invalid sinceTime: {query['sinceTime']!r}") from error
        elif "sinceSeconds" in query:
            since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=_number(query, "sinceSeconds")
                                                                              or 0)
        timestamps = _flag(query, "timestamps")
        body = container_logs.render(path, timestamps=timestamps, tail_lines=tail, limit_bytes=limit, since=since)
        if not (_flag(query, "follow") and not previous):
            return self._answer(200, body)
        self._follow(namespace, pod, container, path, body, timestamps=timestamps, limit=limit)

    def _follow(self, namespace: str, pod: str, container: str, path: Path, first: bytes, *, timestamps: bool,
                limit: int | None) -> None:
        """Stream the log as it grows until the container ends (close-delimited body, HTTP/1.0)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        sent = 0
        count = len(container_logs.entries(path))
        with contextlib.suppress(OSError):
            self.wfile.write(first)
            self.wfile.flush()
            sent = len(first)
            while limit is None or sent < limit:
                running = self.kubelet.logs.running(namespace, pod, container)
                lines = container_logs.entries(path)
                fresh = [entry for entry in lines[count:] if not entry.partial]
                count += len(fresh)
                data = b"".join((entry.timestamp + b" " if timestamps else b"") + entry.content + b"\n"
                                for entry in fresh)
                if limit is not None:
                    data = data[:limit - sent]
                if data:
                    self.wfile.write(data)
                    self.wfile.flush()
                    sent += len(data)
                if not running:
                    break
                time.sleep(FOLLOW_POLL_SECONDS)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "false").lower() in ("true", "1")


def _number(query: dict[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        value = int(query[name])
    except ValueError as error:
        raise HttpError(400, f"invalid {name}: {query[name]!r}") from error
    if value < 0:
        raise HttpError(400, f"{name} must not be negative")
    return value


def subject_access_review(api_client: Any, node_name: str, user: str, groups: list[str],
                          subresource: str) -> str | None:
    """None when `user` may `get` the Node's `subresource` (a SubjectAccessReview, as the kubelet's webhook
    authorizer asks); else the reason it may not."""
    from kubernetes import client

    authorization: Any = client.AuthorizationV1Api(api_client)
    review = authorization.create_subject_access_review(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
         "spec": {"user": user, "groups": groups, "resourceAttributes": {
             "verb": "get", "resource": "nodes", "subresource": subresource, "name": node_name}}},
        _preload_content=False, _request_timeout=10)
    status = json.loads(review.data).get("status", {})
    return None if status.get("allowed") else str(status.get("reason") or "")


def _self_signed(directory: Path, node_name: str) -> tuple[Path, Path]:
    """A self-signed serving certificate for 127.0.0.1 and the node's name, as a kubelet makes by default."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "kubelet.crt", directory / "kubelet.key"
    openssl = shutil.which("openssl") or "openssl"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "7", "-subj", f"/CN={node_name}@{int(time.time())}",
         "-addext", f"subjectAltName=IP:127.0.0.1,DNS:{node_name},DNS:{socket.gethostname()}",
         "-addext", "extendedKeyUsage=serverAuth"],
        check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key
