"""Running `dbops operator` against the test control plane, and helpers to drive dbops resources."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.fixtures.cluster import read_json, wait_for

from dbops.api.base import GROUP, VERSION
from dbops.api.kinds import ALL_KINDS
from dbops_testbed import postgres as testbed_postgres
from dbops_testbed.controlplane import ControlPlane

REPOSITORY = Path(__file__).resolve().parents[2]
PLURALS = {kind.kind: kind.plural for kind in ALL_KINDS}


class RunningOperator:
    """A `dbops operator` subprocess watching one namespace; logs go to a file."""

    def __init__(self, control_plane: ControlPlane, namespace: str, *extra: str,
                 env: dict[str, str] | None = None, kubeconfig: Path | None = None,
                 module: str = "dbops.cli.main") -> None:
        self.env = env or {}
        self.module = module
        """The module run with -m, e.g. tests.integration.faulty_operator for fault injection."""
        self.kubeconfig = kubeconfig or control_plane.kubeconfig
        self.control_plane = control_plane
        self.namespace = namespace
        self.extra = extra
        self.log_path = Path(tempfile.mkstemp(prefix="dbops-operator-", suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the operator process."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        args = [
            sys.executable, "-m", self.module, "operator", "--namespace", self.namespace,
            "--metrics-port", "0", "--health-port", "0", "--recheck-seconds", "5", "--image", "dbops:test",
            "--job-env", f"DBOPS_PG_BIN_DIR={testbed_postgres.client_bin_dir()}", *self.extra,
        ]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True, cwd=REPOSITORY)
        log.close()

    def kill(self) -> None:
        """SIGKILL the operator (no cleanup, like a crashed pod)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        """Stop the operator gracefully (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def logs(self) -> str:
        """Everything the operator wrote."""
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None


@contextlib.contextmanager
def running_operator(control_plane: ControlPlane, namespace: str, *extra: str,
                     kubeconfig: Path | None = None) -> Iterator[RunningOperator]:
    """An operator for the duration of the block."""
    operator = RunningOperator(control_plane, namespace, *extra, kubeconfig=kubeconfig)
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
        print("---- operator log (tail) ----\n" + "\n".join(operator.logs().splitlines()[-150:]))
        operator.log_path.unlink(missing_ok=True)


def create_secret(kube_client: Any, namespace: str, name: str, data: dict[str, str]) -> None:
    """Create an Opaque Secret."""
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    client.CoreV1Api(kube_client).create_namespaced_secret(
        namespace, {"metadata": {"name": name}, "data": encoded}, _preload_content=False)


def create_resource(kube_client: Any, namespace: str, kind: str, name: str, spec: dict[str, Any],
                    labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Create a dbops resource."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind,
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
    return read_json(client.CustomObjectsApi(kube_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], body, _preload_content=False))


def get_resource(kube_client: Any, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    """A dbops resource, or None."""
    try:
        return read_json(client.CustomObjectsApi(kube_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], name, _preload_content=False))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def list_resources(kube_client: Any, namespace: str, kind: str) -> list[dict[str, Any]]:
    """All resources of a dbops kind in a namespace."""
    answer = read_json(client.CustomObjectsApi(kube_client).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[kind], _preload_content=False))
    items: list[dict[str, Any]] = answer["items"]
    return items


def delete_resource(kube_client: Any, namespace: str, kind: str, name: str) -> None:
    """Delete a dbops resource (ignoring NotFound)."""
    with contextlib.suppress(ApiException):
        client.CustomObjectsApi(kube_client).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[kind], name, _preload_content=False)


def wait_for_phase(kube_client: Any, namespace: str, kind: str, name: str, phases: set[str], *,
                   timeout: float = 240.0) -> dict[str, Any]:
    """Wait until a resource reaches one of the phases; return it."""
    def reached() -> dict[str, Any] | None:
        body = get_resource(kube_client, namespace, kind, name)
        if body and (body.get("status") or {}).get("phase") in phases:
            return body
        return None

    try:
        return wait_for(reached, timeout=timeout, interval=0.5, message=f"{kind} {name} to reach {sorted(phases)}")
    except BaseException:
        body = get_resource(kube_client, namespace, kind, name)
        print(json.dumps((body or {}).get("status"), indent=1))
        raise


def list_jobs(kube_client: Any, namespace: str) -> list[dict[str, Any]]:
    """All Jobs in a namespace."""
    answer = read_json(client.BatchV1Api(kube_client).list_namespaced_job(namespace, _preload_content=False))
    items: list[dict[str, Any]] = answer["items"]
    return items


def job_finished(job: dict[str, Any]) -> bool:
    """Whether a Job completed or failed."""
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def role_jobs(kube_client: Any, namespace: str, role: str) -> list[dict[str, Any]]:
    """The Jobs of one dbops role (backup, restore, apply, delete, ...)."""
    return [j for j in list_jobs(kube_client, namespace) if j["metadata"]["labels"].get("dbops.io/role") == role]


def delete_job(kube_client: Any, namespace: str, name: str) -> None:
    """Delete a Job and (in the background) its pods, as `kubectl delete job` does."""
    client.BatchV1Api(kube_client).delete_namespaced_job(name, namespace, propagation_policy="Background",
                                                         _preload_content=False)


def wait_for_finished_job(kube_client: Any, namespace: str, role: str, message: str,
                          timeout: float = 240) -> list[dict[str, Any]]:
    """Wait until a Job of ``role`` finished (e.g. while the operator is down); the finished Jobs."""
    found: list[dict[str, Any]] = eventually(
        lambda: [j for j in role_jobs(kube_client, namespace, role) if job_finished(j)], timeout=timeout,
        message=message)
    return found

def list_pods(kube_client: Any, namespace: str) -> list[dict[str, Any]]:
    """All pods in a namespace."""
    answer = read_json(client.CoreV1Api(kube_client).list_namespaced_pod(namespace, _preload_content=False))
    items: list[dict[str, Any]] = answer["items"]
    return items


def list_events(kube_client: Any, namespace: str) -> list[dict[str, Any]]:
    """All Events in a namespace."""
    answer = read_json(client.CoreV1Api(kube_client).list_namespaced_event(namespace, _preload_content=False))
    items: list[dict[str, Any]] = answer["items"]
    return items


def events_of(kube_client: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """The Events whose involved object is named ``name``."""
    return [e for e in list_events(kube_client, namespace) if e.get("involvedObject", {}).get("name") == name]


def wait_for_event(kube_client: Any, namespace: str, name: str, reason: str,
                   timeout: float = 60) -> list[dict[str, Any]]:
    """The Events of ``name`` once one has ``reason`` (as its reason, or its message's ``reason:`` prefix).

    The operator records an Event just after the status change a test waited for: read at once, it can be
    missing on a loaded machine.
    """
    def seen() -> list[dict[str, Any]] | None:
        found = events_of(kube_client, namespace, name)
        return found if any(reason in (e["reason"], e["message"].split(":", 1)[0]) for e in found) else None

    events: list[dict[str, Any]] = eventually(seen, timeout=timeout, message=f"an Event {reason} on {name}")
    return events


def s3_storage(minio: Any, bucket: str, prefix: str = "ops") -> dict[str, Any]:
    """A storage block for a MinIO bucket with the `s3` credentials Secret."""
    return {"s3": {"bucket": bucket, "prefix": prefix, "endpoint": minio.endpoint, "region": minio.region,
                   "forcePathStyle": True, "credentialsSecretRef": {"name": "s3"}}}


def s3_keys(minio: Any, bucket: str, prefix: str = "") -> list[str]:
    """Object keys in a bucket."""
    paginator = minio.client().get_paginator("list_objects_v2")
    return [item["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])]


def eventually(predicate: Any, timeout: float = 120.0, message: str = "condition") -> Any:
    """wait_for with a longer default."""
    return wait_for(predicate, timeout=timeout, interval=0.5, message=message)


def monotonic() -> float:
    """A monotonic clock for measurements printed by tests."""
    return time.monotonic()
