"""The simulated node: `ProcessNodeExecutor` registers a Node, binds and watches pods, and runs them as processes."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from dbops_testbed import container_logs
from dbops_testbed.images import ImageConfig, ImageStore
from dbops_testbed.kubelet_server import KubeletServer, LogSource, subject_access_review
from dbops_testbed.node import WorkerApi, register_node
from dbops_testbed.objects import JSON, response_json
from dbops_testbed.pods import PodWorker
from dbops_testbed.provisioner import HostPathProvisioner
from dbops_testbed.references import MissingReference
from dbops_testbed.sandbox import HostMountPoints

logger = logging.getLogger(__name__)

DEFAULT_NODE_NAME = "dbops-testbed-node"
WATCH_TIMEOUT_SECONDS = 5

__all__ = ["DEFAULT_NODE_NAME", "MissingReference", "ProcessNodeExecutor"]


class ProcessNodeExecutor(WorkerApi):
    """A simulated Kubernetes node, the only simulated part of the test bed (it replaces the kubelet).

    It registers a Node, binds unscheduled pods to it (there is no scheduler), and runs each pod
    bound to it as local processes: `pods.PodWorker` (lifecycle, restarts, deadlines, status),
    `images` (the project's image from the Dockerfile, test images, ErrImagePull), `node` (the Node
    object and the API calls workers make), `security`
    (runAsUser/runAsGroup/fsGroup, runAsNonRoot), `environment` and `volumes` (env and volumes as the
    kubelet builds them), `sandbox` (a mount namespace per container) and `probes` (startup,
    readiness, liveness). testbed/README.md lists what is honoured and what is not. Requires root
    and ``unshare``. Runs in background threads: `start()` / `stop()`; `stop()` kills every process.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        node_name: str = DEFAULT_NODE_NAME,
        work_dir: Path | None = None,
        bind_unscheduled: bool = True,
        restart_backoff_seconds: float = 10.0,
        extra_env: dict[str, str] | None = None,
        images: dict[str, ImageConfig] | None = None,
        provision_volumes: bool = True,
    ) -> None:
        """Prepare (not start) a node.

        `api_client`: a `kubernetes.client.ApiClient` with rights over nodes and pods (admin).
        `node_name`: the Node to register. `work_dir`: where pod directories live (a temporary
        directory removed by `stop()` by default). `bind_unscheduled`: bind pods that have no node.
        `restart_backoff_seconds`: the first OnFailure/Always restart delay (doubling, capped at
        300 s). `extra_env`: variables added to every container's base environment (pod env wins).
        `images`: the non-project images this node can run, as `repository:tag` (default
        `dbops_testbed.images.TEST_IMAGES`); the project's image runs under its tags
        (`images.project_tags()`). `provision_volumes`:
        run the host-directory provisioner and its default StorageClass (`provisioner.py`).
        """
        from kubernetes import client

        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)
        self.node_name = node_name
        self.bind_unscheduled = bind_unscheduled
        self.restart_backoff_seconds = restart_backoff_seconds
        self.extra_env = dict(extra_env or {})
        self.images = ImageStore(images)
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="dbops-node-"))
        self.provisioner = (HostPathProvisioner(api_client, self.work_dir / "persistent-volumes")
                            if provision_volumes else None)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._bound: set[str] = set()
        self._deletions_sent: set[str] = set()
        self._pod_dirs: dict[tuple[str, str], Path] = {}
        self.mount_points = HostMountPoints()
        self._watch_thread: threading.Thread | None = None
        self.kubelet: KubeletServer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ProcessNodeExecutor:
        """Register the Node and start watching pods in a background thread."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise RuntimeError("ProcessNodeExecutor needs root and unshare(1) to give containers a mount namespace")
        self.kubelet = KubeletServer(
            self.node_name, self.work_dir / "kubelet", LogSource(self._pod_dir, self._container_running),
            client_ca_file=self.api_client.configuration.ssl_ca_cert,
            authorize=functools.partial(subject_access_review, self.api_client, self.node_name)).start()
        register_node(self.core, self.node_name, self.kubelet.port)
        if self.provisioner is not None:
            self.provisioner.start()
        self._watch_thread = threading.Thread(target=self._watch_loop, name="dbops-node-watch", daemon=True)
        self._watch_thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, kill every container process, delete the Node and remove the work directory."""
        self._stopping.set()
        if self.provisioner is not None:
            self.provisioner.stop()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.request_stop(grace=0.0, reason="executor stopped")
        for worker in workers:
            worker.join(timeout=30)
        if self._watch_thread is not None:
            self._watch_thread.join(timeout=WATCH_TIMEOUT_SECONDS * 4)
        if self.kubelet is not None:
            self.kubelet.stop()
        with contextlib.suppress(Exception):
            self.core.delete_node(self.node_name, _preload_content=False, _request_timeout=10)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> ProcessNodeExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether `stop()` has begun (workers then stop reporting status)."""
        return self._stopping.is_set()

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """Standard output and error of a container of a pod this executor ran (all restarts)."""
        pod_dir = self._pod_dir(namespace, pod)
        if pod_dir is None:
            raise KeyError(f"pod {namespace}/{pod} did not run on {self.node_name}")
        names = sorted(path.name for path in (pod_dir / "logs").iterdir()) if container is None else [container]
        return "".join(container_logs.render(path).decode(errors="replace")
                       for name in names for path in container_logs.attempts(pod_dir, name))

    def _pod_dir(self, namespace: str, pod: str) -> Path | None:
        with self._lock:
            return self._pod_dirs.get((namespace, pod))

    def _container_running(self, namespace: str, pod: str, container: str) -> bool:
        """Whether a container of a pod may still write to its log (running, or restarting)."""
        with self._lock:
            workers = [worker for worker in self._workers.values() if (worker.namespace, worker.name) == (namespace, pod)]
        return any(item.name == container and (item.process is not None or item.restart_at is not None)
                   for worker in workers for item in worker.init_containers + worker.containers)

    def running_pods(self) -> list[tuple[str, str]]:
        """(namespace, name) of the pods whose containers this executor is running right now."""
        with self._lock:
            return [(worker.namespace, worker.name) for worker in self._workers.values()]

    @property
    def api_endpoint(self) -> tuple[str, int] | None:
        """(host, port) of the API server as the pods reach it, if it is on this machine."""
        match = re.match(r"https?://(127\.0\.0\.1|localhost)(?::(\d+))?", self.api_client.configuration.host)
        if match is None:
            return None
        return match.group(1), int(match.group(2) or 443)

    # -- watching --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        from kubernetes import watch

        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    listing = response_json(self.core.list_pod_for_all_namespaces(_preload_content=False,
                                                                          _request_timeout=30))
                    resource_version = listing["metadata"]["resourceVersion"]
                    present = set()
                    for pod in listing["items"]:
                        present.add(pod["metadata"]["uid"])
                        self._handle_pod(pod, deleted=False)
                    self._reap_absent(present)
                stream: Any = watch.Watch()  # type: ignore[no-untyped-call]
                for event in stream.stream(
                    self.core.list_pod_for_all_namespaces, resource_version=resource_version,
                    timeout_seconds=WATCH_TIMEOUT_SECONDS, allow_watch_bookmarks=True,
                    _request_timeout=WATCH_TIMEOUT_SECONDS * 4,
                ):
                    if self._stopping.is_set():
                        stream.stop()
                        break
                    pod = event["raw_object"]
                    if event["type"] == "ERROR":
                        resource_version = None
                        stream.stop()
                        break
                    resource_version = pod["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._handle_pod(pod, deleted=event["type"] == "DELETED")
            except Exception as error:  # a broken watch must never kill the executor
                if not self._stopping.is_set():
                    logger.warning("pod watch failed, re-listing: %s", error)
                resource_version = None
                self._stopping.wait(1.0)

    def _reap_absent(self, present: set[str]) -> None:
        with self._lock:
            gone = [worker for uid, worker in self._workers.items() if uid not in present]
        for worker in gone:
            worker.request_stop(grace=0.0, reason="pod deleted", pod_gone=True)

    def _handle_pod(self, pod: JSON, *, deleted: bool) -> None:
        try:
            self._dispatch(pod, deleted=deleted)
        except Exception:
            logger.exception("handling pod %s/%s failed", pod["metadata"].get("namespace"),
                             pod["metadata"].get("name"))

    def _dispatch(self, pod: JSON, *, deleted: bool) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid = meta["uid"]
        node = spec.get("nodeName")
        if deleted:
            with self._lock:
                worker = self._workers.get(uid)
            if worker is not None:
                worker.request_stop(grace=0.0, reason="pod deleted", pod_gone=True)
            return
        if not node:
            if (self.bind_unscheduled and not meta.get("deletionTimestamp")
                    and spec.get("schedulerName", "default-scheduler") == "default-scheduler"):
                self._bind(pod)
            return
        if node != self.node_name:
            return
        if meta.get("deletionTimestamp"):
            with self._lock:
                worker = self._workers.get(uid)
                if worker is not None:
                    grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                    worker.request_stop(grace=grace, reason="pod deleted")
                    return
            self._finish_deletion(meta["namespace"], meta["name"], uid)
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        with self._lock:
            if uid in self._workers or uid in self._finished or self._stopping.is_set():
                return
            pod_dir = self.work_dir / "pods" / uid
            worker = PodWorker(self, pod, pod_dir)
            self._workers[uid] = worker
            self._pod_dirs[(meta["namespace"], meta["name"])] = pod_dir
        worker.start()

    def _bind(self, pod: JSON) -> None:
        from kubernetes.client.exceptions import ApiException

        meta = pod["metadata"]
        with self._lock:
            if meta["uid"] in self._bound:
                return
            self._bound.add(meta["uid"])
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": meta["name"], "uid": meta["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name}}
        try:
            self.core.create_namespaced_pod_binding(meta["name"], meta["namespace"], body, _preload_content=False)
        except ApiException as error:
            if error.status not in (404, 409):
                with self._lock:
                    self._bound.discard(meta["uid"])
                raise
        except Exception:
            # The API server is unreachable (restarted, say): forget the attempt so the re-list after the
            # watch reconnects binds the pod again, as the scheduler would retry. Kept, the pod stayed
            # Pending forever.
            with self._lock:
                self._bound.discard(meta["uid"])
            raise

    def worker_done(self, worker: PodWorker) -> None:
        with self._lock:
            self._workers.pop(worker.uid, None)
            self._finished.add(worker.uid)
            finish = worker.deletion_requested and not worker.pod_gone
        if finish and not self._stopping.is_set():
            self._finish_deletion(worker.namespace, worker.name, worker.uid)

    def _finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            if uid in self._deletions_sent:
                return
            self._deletions_sent.add(uid)
        try:
            self.core.delete_namespaced_pod(
                name, namespace, body={"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                grace_period_seconds=0, _preload_content=False)
        except ApiException as error:
            if error.status not in (404, 409):
                with self._lock:
                    self._deletions_sent.discard(uid)
                raise
