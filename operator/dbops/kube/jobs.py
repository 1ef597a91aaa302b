"""Reading Jobs and the pods that ran them."""

from __future__ import annotations

from typing import Any

from dbops.kube import objects
from dbops.kube import session as kube_session
from dbops.kube.resources import resource_type

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def get_job(namespace: str, name: str) -> dict[str, Any] | None:
    """A Job, or None."""
    return objects.get("Job", namespace, name)


def job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    """The pods a Job created (they carry the runner's termination message)."""
    return objects.list_objects("Pod", namespace, label_selector=f"{JOB_NAME_LABEL}={job_name}")


def delete_job(namespace: str, name: str) -> bool:
    """Delete a Job and, first, its pods (foreground propagation)."""
    return objects.delete("Job", namespace, name, propagation="Foreground")


def set_ttl(namespace: str, name: str, seconds: int) -> None:
    """Set a Job's ttlSecondsAfterFinished (a mutable field): the TTL controller then removes it once finished."""
    path = resource_type("Job").path(namespace, name)
    try:
        kube_session.session().request("PATCH", path, body={"spec": {"ttlSecondsAfterFinished": seconds}},
                                       content_type="application/merge-patch+json")
    except kube_session.ApiError as error:
        if error.status != objects.NOT_FOUND:
            raise
