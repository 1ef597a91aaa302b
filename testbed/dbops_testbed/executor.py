"""The simulated node: `ProcessNodeExecutor` runs pods' containers as local processes instead of a kubelet."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dbops_testbed.controlplane import die_with_parent

logger = logging.getLogger(__name__)

DEFAULT_NODE_NAME = "dbops-testbed-node"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LIMIT = 2048
FALLBACK_LOG_LINES = 80
RETRY_INTERVAL = 2.0
POLL_INTERVAL = 0.1
MAX_GRACE_SECONDS = 30.0
WATCH_TIMEOUT_SECONDS = 5
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# What the "image" holds: the interpreter, the virtualenv and the project's source tree. A pod volume
# mounted over one of their parents (an emptyDir on /tmp while the checkout lives under /tmp) must not
# hide them, so they are bound back on top of such volumes.
IMAGE_PATHS = tuple(dict.fromkeys(
    Path(path).resolve() for path in (sys.prefix, sys.base_prefix, Path(__file__).resolve().parents[2])
))

JSON = dict[str, Any]


class MissingReference(Exception):
    """A Secret, ConfigMap, ServiceAccount or PVC the pod needs does not exist (yet): wait and retry."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ProcessNodeExecutor:
    """A simulated Kubernetes node: the only simulated part of the test bed (it replaces the kubelet).

    What it does, faithfully:

    - Registers a Node (`node_name`, Ready, capacity/allocatable from this machine, no taints).
    - Watches all pods (list + watch, reconnecting and re-listing on any error). A pod with no
      `spec.nodeName` and the default scheduler is bound to this node through the Binding
      subresource (there is no scheduler: nodeSelector, affinity and tolerations are ignored).
    - For each pod bound to this node: resolves volumes and env, then runs init containers in
      order, then all containers concurrently, each as ``command + args`` (``$(VAR)`` expanded as
      the kubelet does). The image is ignored: commands are looked up on the host's PATH (the
      directory of the running Python first, so ``dbops`` is the project's installed CLI). A
      container without ``command`` cannot run (the image entrypoint is unknown): it ends with
      ``StartError``, like a missing executable.
    - Env: a minimal base (PATH, HOME=/root, HOSTNAME=pod name, KUBERNETES_SERVICE_HOST/PORT
      pointing at the API server on 127.0.0.1, not the unroutable service IP), then ``envFrom``
      (configMapRef / secretRef, with prefix, optional), then ``env`` (value, secretKeyRef,
      configMapKeyRef, fieldRef for metadata.name/namespace/uid/labels/annotations,
      spec.nodeName, spec.serviceAccountName, status.podIP/hostIP). The executor's own
      environment does not leak into pods. A missing non-optional Secret/ConfigMap or key leaves
      the container waiting with ``CreateContainerConfigError`` and is retried, as the kubelet does.
    - Volumes: secret, configMap, emptyDir, downwardAPI, projected (secret, configMap, downwardAPI,
      serviceAccountToken through the real TokenRequest API, so the auto-mounted
      ``/var/run/secrets/kubernetes.io/serviceaccount`` works with in-cluster config), hostPath and
      persistentVolumeClaim (a directory per claim that lives as long as the executor; the PVC
      object must exist). ``subPath``/``subPathExpr`` and ``readOnly`` are honoured.
    - Each container runs in its own mount namespace (``unshare --mount --propagation private``):
      a private tmpfs on ``/dev`` (null, zero, full, random, urandom, tty bind-mounted, fd/std*
      links, a fresh ``/dev/shm``, ``/dev/pts``), each volume bind-mounted at its ``mountPath``,
      and a per-container file at ``terminationMessagePath`` (default ``/dev/termination-log``).
      Missing mount points outside ``/dev`` (and a missing ``workingDir``, default ``/``) are created
      on the host, shared by reference count, and removed again when no running pod needs them.
    - Pod status follows the kubelet: Pending (ContainerCreating) → Running → Succeeded / Failed,
      with ``containerStatuses[].state.terminated`` (exitCode, reason Completed/Error, message
      read from the termination message file, capped to 4096 bytes; ``FallbackToLogsOnError``
      uses the log tail). Signals give exit code 128+N.
    - ``activeDeadlineSeconds`` (counted from the pod's start on this node): the containers are
      killed and the pod fails with reason ``DeadlineExceeded``.
    - Pod deletion: SIGTERM to the container's process group, SIGKILL after the grace period
      (capped to 30 s), final status, then delete with grace 0 (as the kubelet finishes deletion).
      When a container's main process ends, whatever it left running (its process group and any
      process in its mount namespace, even after setsid) is killed, as a runtime does.
    - restartPolicy: ``Never`` (what Jobs use) ends the pod on the first exit; ``OnFailure``
      restarts a failed container in place (restartCount, lastState, CrashLoopBackOff with a
      doubling back-off starting at `restart_backoff_seconds`), ``Always`` also restarts on success.

    Not honoured (documented deviations): images, ``securityContext`` (everything runs as root, so
    ``runAsUser``/``runAsNonRoot`` are admitted by Pod Security but not applied), resource limits,
    probes, lifecycle hooks, sidecar init containers (``restartPolicy: Always`` in
    initContainers run like ordinary ones), ``resourceFieldRef``, networking (pods share the host
    network; podIP = hostIP = 127.0.0.1), Events, ``kubectl logs`` (use `logs()`). Requires root
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
    ) -> None:
        """Prepare (not start) a node.

        `api_client`: a `kubernetes.client.ApiClient` with rights over nodes and pods (admin).
        `node_name`: the Node to register. `work_dir`: where pod directories live (a temporary
        directory removed by `stop()` by default). `bind_unscheduled`: bind pods that have no node.
        `restart_backoff_seconds`: the first OnFailure/Always restart delay (doubling, capped at
        300 s). `extra_env`: variables added to every container's base environment (pod env wins).
        """
        from kubernetes import client

        self.api_client = api_client
        self.core: Any = client.CoreV1Api(api_client)
        self.node_name = node_name
        self.bind_unscheduled = bind_unscheduled
        self.restart_backoff_seconds = restart_backoff_seconds
        self.extra_env = dict(extra_env or {})
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="dbops-node-"))
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._workers: dict[str, _PodWorker] = {}
        self._finished: set[str] = set()
        self._bound: set[str] = set()
        self._deletions_sent: set[str] = set()
        self._pod_dirs: dict[tuple[str, str], Path] = {}
        self.mount_points = _HostMountPoints()
        self._watch_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ProcessNodeExecutor:
        """Register the Node and start watching pods in a background thread."""
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            raise RuntimeError("ProcessNodeExecutor needs root and unshare(1) to give containers a mount namespace")
        self._register_node()
        self._watch_thread = threading.Thread(target=self._watch_loop, name="dbops-node-watch", daemon=True)
        self._watch_thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, kill every container process, delete the Node and remove the work directory."""
        self._stopping.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.request_stop(grace=0.0, reason="executor stopped")
        for worker in workers:
            worker.join(timeout=30)
        if self._watch_thread is not None:
            self._watch_thread.join(timeout=WATCH_TIMEOUT_SECONDS * 4)
        with contextlib.suppress(Exception):
            self.core.delete_node(self.node_name, _preload_content=False, _request_timeout=10)
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> ProcessNodeExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inspection ------------------------------------------------------------------------

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """Standard output and error of a container of a pod this executor ran (all restarts)."""
        with self._lock:
            pod_dir = self._pod_dirs.get((namespace, pod))
        if pod_dir is None:
            raise KeyError(f"pod {namespace}/{pod} did not run on {self.node_name}")
        logs = sorted((pod_dir / "logs").glob("*.log"))
        if container is not None:
            logs = [path for path in logs if path.stem == container]
        return "".join(path.read_text(errors="replace") for path in logs)

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

    # -- node ------------------------------------------------------------------------------

    def _register_node(self) -> None:
        from kubernetes.client.exceptions import ApiException

        now = _now()
        memory_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
        resources = {"cpu": str(os.cpu_count() or 1), "memory": f"{memory_kib}Ki", "pods": "110",
                     "ephemeral-storage": "100Gi"}
        labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                  "kubernetes.io/arch": "amd64", "dbops.io/process-executor": "true"}
        try:
            self.core.create_node(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "labels": labels},
                 "spec": {}}, _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise
        node = _json(self.core.read_node(self.node_name, _preload_content=False))
        node["spec"]["taints"] = []
        self.core.replace_node(self.node_name, node, _preload_content=False)
        uname = os.uname()
        condition = {"lastHeartbeatTime": now, "lastTransitionTime": now}
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
                          {"type": "Hostname", "address": self.node_name}],
            "nodeInfo": {
                "machineID": uuid.uuid4().hex, "systemUUID": str(uuid.uuid4()), "bootID": str(uuid.uuid4()),
                "kernelVersion": uname.release, "osImage": "dbops process executor",
                "containerRuntimeVersion": "process://1.0", "kubeletVersion": "v0.0.0-process-executor",
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }
        self.core.patch_node_status(self.node_name, {"status": status}, _preload_content=False)

    # -- watching --------------------------------------------------------------------------

    def _watch_loop(self) -> None:
        from kubernetes import watch

        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    listing = _json(self.core.list_pod_for_all_namespaces(_preload_content=False,
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
            worker = _PodWorker(self, pod, pod_dir)
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

    def _worker_done(self, worker: _PodWorker) -> None:
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

    # -- reads used by workers ---------------------------------------------------------------

    def read_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        """A Secret, ConfigMap, ServiceAccount or PersistentVolumeClaim as JSON, or None if absent."""
        from kubernetes.client.exceptions import ApiException

        reader: Callable[..., Any] = {
            "Secret": self.core.read_namespaced_secret,
            "ConfigMap": self.core.read_namespaced_config_map,
            "ServiceAccount": self.core.read_namespaced_service_account,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
        }[kind]
        try:
            return _json(reader(name, namespace, _preload_content=False))
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
        return str(_json(response)["status"]["token"])

    def patch_pod_status(self, namespace: str, name: str, status: JSON) -> bool:
        """Patch a pod's status; False if the pod no longer exists."""
        from kubernetes.client.exceptions import ApiException

        for attempt in range(5):
            try:
                self.core.patch_namespaced_pod_status(name, namespace, {"status": status}, _preload_content=False,
                                                      _request_timeout=30)
                return True
            except ApiException as error:
                if error.status == 404:
                    return False
                logger.warning("patching status of %s/%s failed (%s)", namespace, name, error.status)
            except Exception as error:
                logger.warning("patching status of %s/%s failed: %s", namespace, name, error)
            time.sleep(0.5 * (attempt + 1))
        return True


class _HostMountPoints:
    """Mount points the executor had to create on the host, counted by user and removed when unused.

    A mount namespace cannot bind-mount onto a path that does not exist, and creating it inside
    the namespace still creates it on the shared filesystem. So missing mount points (outside the
    private /dev) are created here and removed again, if still empty, once no pod uses them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[Path, int] = {}

    def acquire(self, path: Path, *, is_file: bool) -> list[Path]:
        """Create the missing components of `path`; return what this caller now holds."""
        held: list[Path] = []
        with self._lock:
            current = Path("/")
            parts = path.parts[1:]
            for index, part in enumerate(parts):
                current = current / part
                if current in self._users:
                    self._users[current] += 1
                    held.append(current)
                    continue
                if current.exists() or current.is_symlink():
                    continue
                if index == len(parts) - 1 and is_file:
                    current.touch()
                else:
                    current.mkdir()
                self._users[current] = 1
                held.append(current)
        return held

    def release(self, held: list[Path]) -> None:
        """Give back paths from `acquire`; remove the ones nobody uses any more (if still empty)."""
        with self._lock:
            for path in reversed(held):
                self._users[path] -= 1
                if self._users[path] > 0:
                    continue
                del self._users[path]
                with contextlib.suppress(OSError):
                    if path.is_dir() and not path.is_symlink():
                        path.rmdir()
                    elif path.stat().st_size == 0:
                        path.unlink()


def _on_private_dev(path: str) -> bool:
    return path == "/dev" or path.startswith("/dev/")


@dataclass
class _Mount:
    """One bind mount inside a container's mount namespace."""

    source: Path
    target: str
    read_only: bool = False


@dataclass
class _Container:
    """One container's spec and its runtime state on this node."""

    spec: JSON
    init: bool
    restart_count: int = 0
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    started_at: str | None = None
    restart_at: float | None = None
    exit_code: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    mount_namespace: str | None = None

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self.spec["name"])

    def status(self) -> JSON:
        """This container's entry in the pod's (init)containerStatuses."""
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"process-executor://{self.spec.get('image', '')}",
            "containerID": f"process://{self.process.pid}" if self.process else None,
            "ready": running and not self.init,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


class _PodWorker(threading.Thread):
    """Runs one pod's containers and reports its status."""

    def __init__(self, executor: ProcessNodeExecutor, pod: JSON, pod_dir: Path) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}-{meta['name']}", daemon=True)
        self.executor = executor
        self.pod = pod
        self.pod_dir = pod_dir
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.spec: JSON = pod["spec"]
        self.stop_event = threading.Event()
        self.grace = 0.0
        self.stop_reason = ""
        self.deletion_requested = False
        self.pod_gone = False
        self.start_time = _now()
        self.started = time.monotonic()
        deadline = self.spec.get("activeDeadlineSeconds")
        self.deadline = self.started + float(deadline) if deadline is not None else None
        self.restart_policy = self.spec.get("restartPolicy", "Always")
        self.init_containers = [_Container(spec, init=True) for spec in self.spec.get("initContainers") or []]
        self.containers = [_Container(spec, init=False) for spec in self.spec.get("containers") or []]
        for container in self.init_containers[1:] + self.containers:
            container.state = {"waiting": {"reason": "PodInitializing"}} if self.init_containers else container.state
        self.initialized = not self.init_containers
        self.volumes: dict[str, Path] = {}
        self.held_mount_points: list[Path] = []
        self.acquired_targets: set[str] = set()

    def request_stop(self, *, grace: float, reason: str, pod_gone: bool = False) -> None:
        """Ask the worker to kill its containers (SIGTERM, SIGKILL after `grace` seconds)."""
        self.grace = min(grace, MAX_GRACE_SECONDS) if not self.stop_event.is_set() else min(self.grace, grace)
        self.stop_reason = reason
        self.pod_gone = self.pod_gone or pod_gone
        if reason == "pod deleted":
            self.deletion_requested = True
        self.stop_event.set()

    # -- main flow -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:
            logger.exception("pod %s/%s failed in the executor", self.namespace, self.name)
            self._kill_all(0.0)
            self._report("Failed", reason="ExecutorError", message=f"process executor error: {error}")
        finally:
            self._kill_all(0.0)
            shutil.rmtree(self.pod_dir / "volumes", ignore_errors=True)
            shutil.rmtree(self.pod_dir / "dev", ignore_errors=True)
            self.executor.mount_points.release(self.held_mount_points)
            self.executor._worker_done(self)

    def _run(self) -> None:
        for name in ("volumes", "logs", "termination", "dev", "setup"):
            (self.pod_dir / name).mkdir(parents=True, exist_ok=True)
        self._report("Pending")
        if not self._prepare():
            return self._finish_stopped()
        for container in self.init_containers:
            outcome = self._supervise([container])
            if outcome != "done":
                return self._finish_stopped() if outcome == "stopped" else self._finish_deadline()
            if container.exit_code != 0:
                return self._report("Failed")
        self.initialized = True
        for container in self.containers:
            container.state = {"waiting": {"reason": "ContainerCreating"}}
        outcome = self._supervise(self.containers)
        if outcome == "stopped":
            return self._finish_stopped()
        if outcome == "deadline":
            return self._finish_deadline()
        failed = any(container.exit_code != 0 for container in self.containers)
        self._report("Failed" if failed else "Succeeded")
        return None

    def _prepare(self) -> bool:
        """Resolve volumes and every container's env, waiting while references are missing."""
        while True:
            try:
                self._materialize_volumes()
                for container in self.init_containers + self.containers:
                    container.env = self._container_env(container.spec)
                    container.argv = [_expand(item, container.env) for item in
                                      [*(container.spec.get("command") or []), *(container.spec.get("args") or [])]]
                return True
            except MissingReference as missing:
                for container in self.init_containers + self.containers:
                    if "waiting" in container.state:
                        container.state = {"waiting": {"reason": missing.reason, "message": missing.message}}
                self._report("Pending")
            if self._deadline_passed():
                self._finish_deadline()
                return False
            if self.stop_event.wait(RETRY_INTERVAL):
                return False

    def _supervise(self, containers: list[_Container]) -> str:
        """Run containers until all ended for good: 'done', 'stopped' (deletion) or 'deadline'."""
        for container in containers:
            self._launch(container)
        self._report("Running" if self.initialized else "Pending")
        while True:
            if self.stop_event.wait(POLL_INTERVAL):
                self._kill_all(self.grace)
                return "stopped"
            if self._deadline_passed():
                self._kill_all(float(self.spec.get("terminationGracePeriodSeconds", 30)))
                return "deadline"
            changed = False
            for container in containers:
                _note_mount_namespace(container)
                if container.process is not None and container.process.poll() is not None:
                    self._record_exit(container)
                    changed = True
                    if self._should_restart(container):
                        delay = min(self.executor.restart_backoff_seconds * 2 ** container.restart_count, 300.0)
                        container.restart_at = time.monotonic() + delay
                        container.last_state, container.state = container.state, {"waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {delay:.0f}s restarting failed container={container.name}"}}
                elif container.restart_at is not None and time.monotonic() >= container.restart_at:
                    container.restart_at = None
                    container.restart_count += 1
                    self._launch(container)
                    changed = True
            if all(container.process is None and container.restart_at is None for container in containers):
                return "done"
            if changed:
                self._report("Running" if self.initialized else "Pending")

    def _should_restart(self, container: _Container) -> bool:
        if self.restart_policy == "Always" and not container.init:
            return True
        return self.restart_policy in ("Always", "OnFailure") and container.exit_code != 0

    def _deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _finish_stopped(self) -> None:
        if self.pod_gone or self.executor._stopping.is_set():
            return
        for container in self.init_containers + self.containers:
            if "waiting" in container.state and not container.init:
                container.state = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                                  "message": "The container could not be located when the pod "
                                                             "was terminated", "startedAt": None,
                                                  "finishedAt": _now()}}
        started = [container for container in self.containers if container.exit_code is not None]
        failed = not started or any(container.exit_code != 0 for container in started)
        self._report("Failed" if failed else "Succeeded")

    def _finish_deadline(self) -> None:
        self._report("Failed", reason="DeadlineExceeded",
                     message="Pod was active on the node longer than the specified deadline")

    # -- processes -------------------------------------------------------------------------

    def _launch(self, container: _Container) -> None:
        spec = container.spec
        message_file = self.pod_dir / "termination" / container.name
        message_file.write_bytes(b"")
        argv = container.argv
        error = None
        if not argv:
            error = "the process executor cannot run image entrypoints: the container needs a command"
        elif "/" not in argv[0] and shutil.which(argv[0], path=container.env.get("PATH", "")) is None:
            error = f'exec: "{argv[0]}": executable file not found in $PATH'
        if error is not None:
            container.process = None
            container.exit_code = 128
            container.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": error,
                                              "startedAt": _now(), "finishedAt": _now()}}
            if self._should_restart(container):
                container.restart_at = time.monotonic() + self.executor.restart_backoff_seconds
            return
        setup = self.pod_dir / "setup" / f"{container.name}.sh"
        setup.write_text(self._setup_script(container, message_file))
        if container.log is None:
            container.log = open(self.pod_dir / "logs" / f"{container.name}.log", "ab")  # noqa: SIM115
        container.process = subprocess.Popen(
            die_with_parent(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", str(setup), *argv]),
            env=container.env, stdin=subprocess.DEVNULL, stdout=container.log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/",
        )
        container.started_at = _now()
        container.exit_code = None
        container.mount_namespace = None
        container.state = {"running": {"startedAt": container.started_at}}
        logger.info("pod %s/%s: started container %s (restart %d)", self.namespace, self.name, spec["name"],
                    container.restart_count)

    def _record_exit(self, container: _Container) -> None:
        """Record a container's exit and kill what it left behind, as a runtime does when PID 1 exits."""
        assert container.process is not None
        _kill_leftovers(container)
        code = container.process.returncode
        exit_code = 128 - code if code < 0 else code
        container.exit_code = exit_code
        container.state = {"terminated": {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": self._termination_message(container, exit_code) or None,
            "startedAt": container.started_at,
            "finishedAt": _now(),
            "containerID": f"process://{container.process.pid}",
        }}
        container.process = None

    def _termination_message(self, container: _Container, exit_code: int) -> str:
        path = self.pod_dir / "termination" / container.name
        data = path.read_bytes()[:TERMINATION_MESSAGE_LIMIT] if path.exists() else b""
        policy = container.spec.get("terminationMessagePolicy", "File")
        if not data.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
            log = self.pod_dir / "logs" / f"{container.name}.log"
            lines = log.read_bytes().splitlines(keepends=True)[-FALLBACK_LOG_LINES:] if log.exists() else []
            data = b"".join(lines)[-FALLBACK_LOG_LIMIT:]
        return data.decode(errors="replace")

    def _kill_all(self, grace: float) -> None:
        running = [c for c in self.init_containers + self.containers if c.process is not None]
        for container in running:
            assert container.process is not None
            _note_mount_namespace(container)
            _signal_group(container.process, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        end = time.monotonic() + grace
        for container in running:
            assert container.process is not None
            try:
                container.process.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(container.process, signal.SIGKILL)
                container.process.wait()
            self._record_exit(container)
        for container in self.init_containers + self.containers:
            container.restart_at = None
            if container.log is not None:
                container.log.close()
                container.log = None

    # -- status ----------------------------------------------------------------------------

    def _report(self, phase: str, *, reason: str | None = None, message: str | None = None) -> None:
        if self.pod_gone or self.executor._stopping.is_set():
            return
        now = _now()
        running = phase == "Running"
        ready = running and all("running" in c.state for c in self.containers)

        def condition(kind: str, value: bool, why: str | None = None) -> JSON:
            return {"type": kind, "status": "True" if value else "False", "lastProbeTime": None,
                    "lastTransitionTime": now, "reason": why}

        terminal = phase in ("Succeeded", "Failed")
        status: JSON = {
            "phase": phase,
            "reason": reason,
            "message": message,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "conditions": [
                condition("PodReadyToStartContainers", not terminal),
                condition("Initialized", self.initialized, None if self.initialized else "ContainersNotInitialized"),
                condition("ContainersReady", ready, None if ready else ("PodCompleted" if terminal
                                                                         else "ContainersNotReady")),
                condition("Ready", ready, None if ready else ("PodCompleted" if terminal else "ContainersNotReady")),
            ],
            "containerStatuses": [container.status() for container in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [container.status() for container in self.init_containers]
        if not self.executor.patch_pod_status(self.namespace, self.name, status):
            self.pod_gone = True
            self.stop_event.set()

    # -- volumes and env ---------------------------------------------------------------------

    def _materialize_volumes(self) -> None:
        for volume in self.spec.get("volumes") or []:
            name = volume["name"]
            if name in self.volumes:
                continue
            target = self.pod_dir / "volumes" / name
            if "hostPath" in volume:
                host = Path(volume["hostPath"]["path"])
                kind = volume["hostPath"].get("type") or ""
                if not host.exists() and kind == "DirectoryOrCreate":
                    host.mkdir(parents=True)
                elif not host.exists() and kind == "FileOrCreate":
                    host.touch()
                self.volumes[name] = host
                continue
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if self.executor.read_object("PersistentVolumeClaim", self.namespace, claim) is None:
                    raise MissingReference("ContainerCreating",
                                           f'persistentvolumeclaim "{claim}" not found')
                directory = self.executor.work_dir / "claims" / self.namespace / claim
                directory.mkdir(parents=True, exist_ok=True)
                self.volumes[name] = directory
                continue
            files = self._volume_files(volume)
            staging = target.with_name(f".{name}.staging")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            for relative, (content, mode) in files.items():
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
                path.chmod(mode)
            staging.rename(target)
            self.volumes[name] = target

    def _volume_files(self, volume: JSON) -> dict[str, tuple[bytes, int]]:
        """The files of a secret/configMap/downwardAPI/projected/emptyDir volume: path → (content, mode)."""
        if "emptyDir" in volume:
            return {}
        if "secret" in volume:
            source = volume["secret"]
            return self._key_files("Secret", source.get("secretName", ""), source, source.get("defaultMode", 0o644))
        if "configMap" in volume:
            source = volume["configMap"]
            return self._key_files("ConfigMap", source.get("name", ""), source, source.get("defaultMode", 0o644))
        if "downwardAPI" in volume:
            source = volume["downwardAPI"]
            return self._downward_files(source.get("items") or [], source.get("defaultMode", 0o644))
        if "projected" in volume:
            mode = volume["projected"].get("defaultMode", 0o644)
            files: dict[str, tuple[bytes, int]] = {}
            for source in volume["projected"].get("sources") or []:
                if "secret" in source:
                    files.update(self._key_files("Secret", source["secret"].get("name", ""), source["secret"], mode))
                elif "configMap" in source:
                    files.update(self._key_files("ConfigMap", source["configMap"].get("name", ""),
                                                 source["configMap"], mode))
                elif "downwardAPI" in source:
                    files.update(self._downward_files(source["downwardAPI"].get("items") or [], mode))
                elif "serviceAccountToken" in source:
                    token_source = source["serviceAccountToken"]
                    token = self.executor.service_account_token(
                        self.pod, token_source.get("audience"), int(token_source.get("expirationSeconds", 3600)))
                    files[token_source["path"]] = (token.encode(), mode)
            return files
        kinds = sorted(set(volume) - {"name"})
        raise MissingReference("ContainerCreating", f"process executor: unsupported volume type {kinds}")

    def _key_files(self, kind: str, name: str, source: JSON, mode: int) -> dict[str, tuple[bytes, int]]:
        data = self._key_data(kind, name, optional=bool(source.get("optional")))
        if data is None:
            return {}
        items = source.get("items")
        if not items:
            return {key: (value, mode) for key, value in data.items()}
        files = {}
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise MissingReference("ContainerCreating",
                                       f'couldn\'t find key {item["key"]} in {kind} {self.namespace}/{name}')
            files[item["path"]] = (data[item["key"]], item.get("mode", mode))
        return files

    def _key_data(self, kind: str, name: str, *, optional: bool) -> dict[str, bytes] | None:
        obj = self.executor.read_object(kind, self.namespace, name)
        if obj is None:
            if optional:
                return None
            raise MissingReference("CreateContainerConfigError", f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
        data = {key: value.encode() for key, value in (obj.get("data") or {}).items()}
        data.update({key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()})
        return data

    def _downward_files(self, items: list[JSON], mode: int) -> dict[str, tuple[bytes, int]]:
        files = {}
        for item in items:
            if "fieldRef" in item:
                value = self._field_value(item["fieldRef"]["fieldPath"], volume=True)
                files[item["path"]] = (value.encode(), item.get("mode", mode))
        return files

    def _field_value(self, path: str, *, volume: bool = False) -> str:
        meta = self.pod["metadata"]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if match:
            return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
        if path in ("metadata.labels", "metadata.annotations") and volume:
            values = meta.get(path.split(".")[1]) or {}
            return "\n".join(f"{key}={json.dumps(value)}" for key, value in sorted(values.items()))
        simple = {
            "metadata.name": meta["name"],
            "metadata.namespace": meta["namespace"],
            "metadata.uid": meta["uid"],
            "spec.nodeName": self.executor.node_name,
            "spec.serviceAccountName": self.spec.get("serviceAccountName", "default"),
            "status.podIP": "127.0.0.1",
            "status.podIPs": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
            "status.hostIPs": "127.0.0.1",
        }
        if path not in simple:
            raise MissingReference("CreateContainerConfigError", f"process executor: unsupported fieldPath {path}")
        return str(simple[path])

    def _container_env(self, spec: JSON) -> dict[str, str]:
        env: dict[str, str] = {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", SYSTEM_PATH)]),
            "HOME": "/root",
            "HOSTNAME": self.name,
        }
        endpoint = self.executor.api_endpoint
        if endpoint is not None:
            host, port = endpoint
            env.update({
                "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": f"tcp://{host}:{port}",
            })
        env.update(self.executor.extra_env)
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            ref = source.get("secretRef") or source.get("configMapRef") or {}
            kind = "Secret" if "secretRef" in source else "ConfigMap"
            data = self._key_data(kind, ref.get("name", ""), optional=bool(ref.get("optional")))
            for key, value in (data or {}).items():
                env[prefix + key] = os.fsdecode(value)
        for item in spec.get("env") or []:
            name = item["name"]
            if "valueFrom" not in item:
                env[name] = _expand(item.get("value", ""), env)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                env[name] = self._field_value(source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
                ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
                data = self._key_data(kind, ref.get("name", ""), optional=bool(ref.get("optional")))
                if data is not None and ref["key"] in data:
                    env[name] = os.fsdecode(data[ref["key"]])
                elif not ref.get("optional"):
                    raise MissingReference("CreateContainerConfigError",
                                           f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}")
            else:
                logger.warning("pod %s/%s: env %s uses an unsupported valueFrom; left unset",
                               self.namespace, self.name, name)
        return env

    # -- the mount namespace -------------------------------------------------------------------

    def _mounts(self, container: _Container) -> list[_Mount]:
        mounts = []
        for mount in container.spec.get("volumeMounts") or []:
            source = self.volumes.get(mount["name"])
            if source is None:
                raise RuntimeError(f"volumeMount {mount['name']} names no volume of the pod")
            sub_path = mount.get("subPath") or _expand(mount.get("subPathExpr", ""), container.env)
            if sub_path:
                source = source / sub_path
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(_Mount(source, mount["mountPath"], bool(mount.get("readOnly"))))
        return mounts

    def _setup_script(self, container: _Container, message_file: Path) -> str:
        """A /bin/sh script that builds the container's mount namespace, then execs its command."""
        stage = self.pod_dir / "dev" / container.name
        stage.mkdir(parents=True, exist_ok=True)
        q = shlex.quote
        lines = [
            "set -eu",
            '_container_path="${PATH:-}"',
            f"PATH={SYSTEM_PATH}",
            f"stage={q(str(stage))}",
            'mount -t tmpfs -o mode=755,nosuid tmpfs "$stage"',
            f"for dev in {' '.join(DEVICES)}; do",
            '  touch "$stage/$dev"; mount --bind "/dev/$dev" "$stage/$dev"',
            "done",
            'ln -s /proc/self/fd "$stage/fd"',
            'ln -s /proc/self/fd/0 "$stage/stdin"; ln -s /proc/self/fd/1 "$stage/stdout"',
            'ln -s /proc/self/fd/2 "$stage/stderr"',
            'mkdir "$stage/shm"; mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$stage/shm"',
            'mkdir "$stage/pts"; mount --bind /dev/pts "$stage/pts"; ln -s pts/ptmx "$stage/ptmx"',
            'mount --move "$stage" /dev',
        ]
        mounts = sorted(self._mounts(container), key=lambda mount: len(Path(mount.target).parts))
        message_target = container.spec.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
        working_dir = container.spec.get("workingDir") or "/"
        for path, is_file in [*((m.target, not m.source.is_dir()) for m in mounts), (message_target, True),
                              (working_dir, False)]:
            if path not in self.acquired_targets and not _on_private_dev(path):
                self.acquired_targets.add(path)
                self.held_mount_points += self.executor.mount_points.acquire(Path(path), is_file=is_file)
        # Sources are first bound inside the private /dev: a later mount (say an emptyDir on /tmp)
        # may hide the host paths they come from.
        sources = [*((mount.source, mount.source.is_dir()) for mount in mounts), (message_file, False)]
        hidden = [path for path in IMAGE_PATHS
                  if any(path.is_relative_to(mount.target) for mount in mounts)]
        sources += [(path, True) for path in hidden]
        lines.insert(lines.index('mount --move "$stage" /dev'), 'mkdir "$stage/.dbops-sources"')
        for index, (source, is_dir) in enumerate(sources):
            lines.insert(lines.index('mount --move "$stage" /dev'),
                         f'{"mkdir" if is_dir else "touch"} "$stage/.dbops-sources/{index}"; '
                         f'mount --bind {q(str(source))} "$stage/.dbops-sources/{index}"')
        for index, mount in enumerate(mounts):
            target = q(mount.target)
            if mount.source.is_dir():
                lines.append(f"mkdir -p {target}")
            else:
                lines.append(f'mkdir -p "$(dirname {target})"; [ -e {target} ] || touch {target}')
            lines.append(f"mount --bind /dev/.dbops-sources/{index} {target}")
            if mount.read_only:
                lines.append(f"mount -o remount,bind,ro {target}")
        for index, path in enumerate(hidden, start=len(mounts) + 1):
            lines.append(f"mkdir -p {q(str(path))}")
            lines.append(f"mount --bind /dev/.dbops-sources/{index} {q(str(path))}")
        message_path = q(message_target)
        lines += [
            f'mkdir -p "$(dirname {message_path})"; [ -e {message_path} ] || touch {message_path}',
            f"mount --bind /dev/.dbops-sources/{len(mounts)} {message_path}",
            "for source in /dev/.dbops-sources/*; do umount -l \"$source\"; done",
            "rm -rf /dev/.dbops-sources",
            f"mkdir -p {q(working_dir)}",
            f"cd {q(working_dir)}",
            'PATH="$_container_path"; unset _container_path stage dev source',
            'exec "$@"',
        ]
        return "\n".join(lines) + "\n"


def _expand(text: str, env: dict[str, str]) -> str:
    """Expand $(VAR) references like the kubelet: unknown ones stay as they are, $$ escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, text)


def _note_mount_namespace(container: _Container) -> None:
    """Remember the container's mount namespace once its process has entered it."""
    if container.mount_namespace is not None or container.process is None:
        return
    with contextlib.suppress(OSError):
        namespace = os.readlink(f"/proc/{container.process.pid}/ns/mnt")
        if namespace != os.readlink("/proc/self/ns/mnt"):
            container.mount_namespace = namespace


def _kill_leftovers(container: _Container) -> None:
    """SIGKILL the container's process group and every process still in its mount namespace."""
    assert container.process is not None
    _signal_group(container.process, signal.SIGKILL)
    if container.mount_namespace is None or container.mount_namespace == os.readlink("/proc/self/ns/mnt"):
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/mnt") == container.mount_namespace:
                os.kill(int(entry), signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def _json(response: Any) -> JSON:
    data: JSON = json.loads(response.data)
    return data


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
