"""Reading a Job's pod log through the API server (`pods/log`), bounded so a chatty pod cannot fill memory."""

from __future__ import annotations

from typing import Any

from dbops.kube import objects
from dbops.kube import session as kube_session
from dbops.kube.resources import resource_type

DEFAULT_LIMIT_BYTES = 4 * 1024 * 1024
"""The most of a log read by default: well above what a ConfigMap holds (1 MiB), far below operator memory."""

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
"""The labels the Job controller puts on its pods (the second for clusters before Kubernetes 1.27)."""

# A 400 from the API server on pods/log mostly means the log is not there to read: the container has not
# started, or was removed with its node. That is "gone". A wrong or missing container name is a caller's
# mistake and is raised.
CALLER_MISTAKES = ("container name must be specified", "is not valid for pod")


def job_pod(namespace: str, job_name: str) -> dict[str, Any] | None:
    """The Job's pod whose log matters: its newest Succeeded pod, else its newest pod; None without pods."""
    pods: list[dict[str, Any]] = []
    for label in JOB_NAME_LABELS:
        pods = objects.list_objects("Pod", namespace, label_selector=f"{label}={job_name}")
        if pods:
            break
    if not pods:
        return None

    def newest(pod: dict[str, Any]) -> tuple[bool, str, str]:
        meta = pod.get("metadata") or {}
        succeeded = (pod.get("status") or {}).get("phase") == "Succeeded"
        return succeeded, str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")

    return max(pods, key=newest)


def read_pod_log(namespace: str, pod_name: str, *, container: str | None = None,
                 limit_bytes: int = DEFAULT_LIMIT_BYTES, tail_lines: int | None = None) -> str | None:
    """A pod's log (UTF-8, invalid bytes replaced), at most `limit_bytes` bytes from its start (or of its last
    `tail_lines` lines); None when the pod or its log is gone.

    The API server is asked for `limitBytes` and the answer is cut there too, so memory stays bounded even
    if a server ignores it. Other failures (403 without `pods/log` rights, an unreachable API server or node)
    raise `kube.session.ApiError`.
    """
    if limit_bytes <= 0:
        raise ValueError("limit_bytes must be positive")
    query = {"limitBytes": str(limit_bytes)}
    if container:
        query["container"] = container
    if tail_lines is not None:
        query["tailLines"] = str(tail_lines)
    path = resource_type("Pod").path(namespace, pod_name, "log")
    try:
        data = kube_session.session().read_bytes(path, query=query, max_bytes=limit_bytes)
    except kube_session.ApiError as error:
        if error.status == 404 or (error.status == 400 and not any(text in error.detail for text in CALLER_MISTAKES)):
            return None
        raise
    return data.decode("utf-8", errors="replace")


def read_job_pod_log(namespace: str, job_name: str, *, container: str | None = None,
                     limit_bytes: int = DEFAULT_LIMIT_BYTES) -> str | None:
    """The log of a Job's pod (its newest Succeeded pod, else its newest), at most `limit_bytes` bytes;
    None when the Job has no pod left or the log is gone (see `read_pod_log`)."""
    pod = job_pod(namespace, job_name)
    if pod is None:
        return None
    return read_pod_log(namespace, str(pod["metadata"]["name"]), container=container, limit_bytes=limit_bytes)
