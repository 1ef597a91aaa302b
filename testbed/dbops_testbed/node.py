"""The simulated node's own objects and API calls: its Node, and the reads and writes its pod workers make."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from dbops_testbed.objects import JSON, now, response_json
from dbops_testbed.references import MissingReference

logger = logging.getLogger(__name__)


def register_node(core: Any, node_name: str, kubelet_port: int) -> None:
    """Create (or take over) the Node, untainted, with its capacity, conditions and kubelet endpoint."""
    from kubernetes.client.exceptions import ApiException

    timestamp = now()
    memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    resources = {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "pods": "110",
                 "ephemeral-storage": "100Gi"}
    labels = {"kubernetes.io/hostname": node_name, "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "dbops.io/process-executor": "true"}
    try:
        core.create_node(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name, "labels": labels},
             "spec": {}}, _preload_content=False)
    except ApiException as error:
        if error.status != 409:
            raise
    node = response_json(core.read_node(node_name, _preload_content=False))
    node["spec"]["taints"] = []
    core.replace_node(node_name, node, _preload_content=False)
    uname = os.uname()
    condition = {"lastHeartbeatTime": timestamp, "lastTransitionTime": timestamp}
    status = {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "dbops process executor is ready", **condition},
            *({"type": kind, "status": "False", "reason": f"KubeletHas{reason}", **condition}
              for kind, reason in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                                   ("PIDPressure", "SufficientPID"))),
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": node_name}],
        # Where the API server reaches this node's kubelet API (`kubectl logs`): InternalIP and this port.
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": uuid.uuid4().hex, "systemUUID": str(uuid.uuid4()), "bootID": str(uuid.uuid4()),
            "kernelVersion": uname.release, "osImage": "dbops process executor",
            "containerRuntimeVersion": "process://1.0", "kubeletVersion": "v0.0.0-process-executor",
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
    }
    core.patch_node_status(node_name, {"status": status}, _preload_content=False)


class WorkerApi:
    """The API calls a pod worker makes through its node (the executor): reads, token, Events, pod status."""

    core: Any
    node_name: str
    _stopping: threading.Event

    def read_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        """A Secret, ConfigMap, ServiceAccount, PersistentVolumeClaim or PersistentVolume (cluster-wide) as JSON."""
        from kubernetes.client.exceptions import ApiException

        reader: Callable[..., Any] | None = {
            "Secret": self.core.read_namespaced_secret,
            "ConfigMap": self.core.read_namespaced_config_map,
            "ServiceAccount": self.core.read_namespaced_service_account,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
        }.get(kind)
        try:
            if kind == "PersistentVolume":
                return response_json(self.core.read_persistent_volume(name, _preload_content=False))
            assert reader is not None, kind
            return response_json(reader(name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def service_account_token(self, pod: JSON, audience: str | None, expiration: int) -> str:
        """A bound service-account token for the pod through the TokenRequest API."""
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        spec: JSON = {"expirationSeconds": expiration,
                      "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}
        if audience:
            spec["audiences"] = [audience]
        from kubernetes.client.exceptions import ApiException

        try:
            response = self.core.create_namespaced_service_account_token(
                account, meta["namespace"], {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                             "spec": spec}, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                raise MissingReference("ContainerCreating", f'serviceaccount "{account}" not found') from error
            raise
        return str(response_json(response)["status"]["token"])

    def record_event(self, pod: JSON, reason: str, message: str, *, kind: str = "Warning") -> None:
        """An Event on the pod from the kubelet, as `kubectl describe pod` shows them (best effort)."""
        meta = pod["metadata"]
        timestamp = now()
        body = {"apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta["uid"]},
                "reason": reason, "message": message, "type": kind, "count": 1,
                "firstTimestamp": timestamp, "lastTimestamp": timestamp,
                "source": {"component": "kubelet", "host": self.node_name}}
        try:
            self.core.create_namespaced_event(meta["namespace"], body, _preload_content=False, _request_timeout=10)
        except Exception as error:
            logger.warning("recording event %s on %s/%s failed: %s", reason, meta["namespace"], meta["name"], error)

    def patch_pod_status(self, namespace: str, name: str, status: JSON) -> bool:
        """Patch a pod's status; False if the pod no longer exists.

        A terminal phase is retried while the API server is unreachable or failing (5xx, 429) until it lands
        or the executor stops, as the kubelet's status manager keeps syncing it; given up, a final status lost
        to an API server restart would leave the pod Running and its Job unfinished forever. Other statuses are
        superseded by the next report, so they are tried a few times only.
        """
        from kubernetes.client.exceptions import ApiException

        persist = status.get("phase") in ("Succeeded", "Failed")
        attempt = 0
        while (attempt < 5 or persist) and not self._stopping.is_set():
            attempt += 1
            try:
                self.core.patch_namespaced_pod_status(name, namespace, {"status": status}, _preload_content=False,
                                                      _request_timeout=30)
                return True
            except ApiException as error:
                if error.status == 404:
                    return False
                persist = persist and (error.status >= 500 or error.status == 429)
                logger.warning("patching status of %s/%s failed (%s)", namespace, name, error.status)
            except Exception as error:
                logger.warning("patching status of %s/%s failed: %s", namespace, name, error)
            self._stopping.wait(min(0.5 * attempt, 5.0))
        return True
