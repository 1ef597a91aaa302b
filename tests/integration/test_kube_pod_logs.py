"""`kube.pod_logs` against the real API server: a Job's pod log, bounded, and None once the pod is gone."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from tests.fixtures.cluster import wait_for
from tests.integration.test_testbed_cluster import job_condition, job_manifest, job_pods

from dbops.kube import pod_logs
from dbops.kube import session as kube_session
from dbops_testbed.controlplane import ControlPlane

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def session(control_plane: ControlPlane) -> kube_session.KubeSession:
    return kube_session.configure(str(control_plane.kubeconfig))


def test_job_pod_log(session: kube_session.KubeSession, kube_client: Any, namespace: str) -> None:
    batch = client.BatchV1Api(kube_client)
    # 2,000 lines of 60 bytes: 122,000 bytes, far beyond a termination message.
    script = "i=1; while [ $i -le 2000 ]; do printf 'finding %05d %s\\n' $i \"$(printf '%046d' 0)\"; i=$((i+1)); done"
    batch.create_namespaced_job(namespace, job_manifest("chatty-plan", ["sh", "-c", script]))
    wait_for(lambda: job_condition(kube_client, namespace, "chatty-plan"), timeout=120, message="the Job to end")

    text = pod_logs.read_job_pod_log(namespace, "chatty-plan")
    assert text is not None
    lines = text.splitlines()
    assert len(lines) == 2000 and lines[0].startswith("finding 00001 ") and lines[-1].startswith("finding 02000 ")
    assert len(text.encode()) == 2000 * 61

    bounded = pod_logs.read_job_pod_log(namespace, "chatty-plan", limit_bytes=1000)
    assert bounded == text[:1000]
    assert pod_logs.read_job_pod_log(namespace, "chatty-plan", container="main", limit_bytes=61) == lines[0] + "\n"

    assert pod_logs.read_job_pod_log(namespace, "no-such-job") is None
    pod = job_pods(kube_client, namespace, "chatty-plan")[0]["metadata"]["name"]
    assert pod_logs.read_pod_log(namespace, pod, tail_lines=1) == lines[-1] + "\n"
    with pytest.raises(kube_session.ApiError) as error:
        pod_logs.read_pod_log(namespace, pod, container="sidecar")
    assert error.value.status == 400

    client.CoreV1Api(kube_client).delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
    wait_for(lambda: not job_pods(kube_client, namespace, "chatty-plan"), timeout=60, message="the pod to go")
    assert pod_logs.read_pod_log(namespace, pod) is None
    assert pod_logs.read_job_pod_log(namespace, "chatty-plan") is None
