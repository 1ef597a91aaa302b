"""Pod logs through the real API server: `kubectl logs` and `pods/log` reach the node's kubelet API."""

from __future__ import annotations

import datetime
import ssl
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.fixtures.cluster import wait_for
from tests.integration.test_testbed_cluster import pod_manifest, read_pod

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.executor import ProcessNodeExecutor

pytestmark = pytest.mark.timeout(300)

LINES = 300


def ended(kube_client: Any, namespace: str, name: str) -> dict[str, Any] | None:
    pod = read_pod(kube_client, namespace, name)
    return pod if pod and pod["status"].get("phase") in ("Succeeded", "Failed") else None


def test_logs_through_the_api_server(
    kube_client: Any, control_plane: ControlPlane, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    core = client.CoreV1Api(kube_client)
    # Standard output and error, a long line (over the runtime's 16 KiB entry size) and no final newline.
    script = (f"i=1; while [ $i -le {LINES} ]; do echo \"line $i\"; i=$((i+1)); done; echo oops >&2; "
              "head -c 40000 /dev/zero | tr '\\0' x; echo; printf tail")
    core.create_namespaced_pod(namespace, pod_manifest("chatty", ["sh", "-c", script]))
    pod = wait_for(lambda: ended(kube_client, namespace, "chatty"), timeout=90, message="the chatty pod to end")
    assert pod["status"]["phase"] == "Succeeded"

    full = core.read_namespaced_pod_log("chatty", namespace)
    lines = full.split("\n")
    assert lines[:LINES] == [f"line {i}" for i in range(1, LINES + 1)]
    # The unfinished last line ends the log as a full entry (containerd at EOF), so it gains its newline.
    assert lines[LINES:] == ["oops", "x" * 40000, "tail", ""]

    # limitBytes cuts the answer at that many bytes, mid-line if need be.
    assert core.read_namespaced_pod_log("chatty", namespace, limit_bytes=100) == full[:100]
    assert core.read_namespaced_pod_log("chatty", namespace, tail_lines=2) == "x" * 40000 + "\ntail\n"

    stamped = core.read_namespaced_pod_log("chatty", namespace, timestamps=True, limit_bytes=4096).split("\n")
    moment, _, text = stamped[0].partition(" ")
    assert text == "line 1"
    started = datetime.datetime.fromisoformat(moment[:26] + "+00:00")
    assert abs((datetime.datetime.now(datetime.UTC) - started).total_seconds()) < 300

    # kubectl goes the same way (the API server proxies pods/log to the node).
    assert control_plane.kubectl("logs", "-n", namespace, "chatty", "--tail=1") == "tail\n"
    assert control_plane.kubectl("logs", "-n", namespace, "chatty", "--limit-bytes=13") == "line 1\nline 2"

    with pytest.raises(ApiException) as error:
        core.read_namespaced_pod_log("chatty", namespace, previous=True)
    assert error.value.status == 400 and "previous terminated container" in str(error.value.body)
    if node_executor is not None:
        assert node_executor.logs(namespace, "chatty") == full
        assert node_executor.kubelet is not None
        # Only clients with a certificate from the cluster CA reach the kubelet API (here the API server).
        anonymous = ssl.create_default_context()
        anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            urllib.request.urlopen(f"https://127.0.0.1:{node_executor.kubelet.port}/containerLogs/{namespace}/chatty/main",
                                   context=anonymous, timeout=10).read()


def test_previous_and_follow(kube_client: Any, control_plane: ControlPlane, namespace: str) -> None:
    core = client.CoreV1Api(kube_client)
    # First run fails and is restarted (OnFailure); the second run prints more slowly and succeeds.
    script = ("if [ -e /tmp/ran ]; then for i in 1 2 3; do echo second $i; sleep 0.5; done; exit 0; fi; "
              "touch /tmp/ran; echo first; exit 3")
    core.create_namespaced_pod(namespace, pod_manifest(
        "twice", ["sh", "-c", script], restartPolicy="OnFailure",
        volumes=[{"name": "tmp", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}))

    def restarted() -> bool:
        pod = read_pod(kube_client, namespace, "twice")
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        return bool(statuses) and statuses[0]["restartCount"] >= 1 and "running" in statuses[0]["state"]

    wait_for(restarted, timeout=120, message="the second run of the container")
    # Follow streams the running container's log until it ends.
    followed = control_plane.kubectl("logs", "-n", namespace, "twice", "-f")
    assert followed == "second 1\nsecond 2\nsecond 3\n"
    assert core.read_namespaced_pod_log("twice", namespace, previous=True) == "first\n"
