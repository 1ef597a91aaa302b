"""Pod lifecycle and status on the node: one worker thread per pod runs its containers and reports status."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dbops_testbed import container_logs, images, sandbox
from dbops_testbed.container_logs import ContainerLog
from dbops_testbed.containers import Container
from dbops_testbed.environment import container_env
from dbops_testbed.images import ImagePullError
from dbops_testbed.objects import JSON, now
from dbops_testbed.probes import ContainerProbes, exec_in_container
from dbops_testbed.references import MissingReference
from dbops_testbed.security import identity
from dbops_testbed.volumes import container_mounts, materialize_volumes, read_only_volumes

if TYPE_CHECKING:
    from dbops_testbed.executor import ProcessNodeExecutor

logger = logging.getLogger(__name__)

TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LIMIT = 2048
FALLBACK_LOG_LINES = 80
RETRY_INTERVAL = 2.0
POLL_INTERVAL = 0.1
MAX_GRACE_SECONDS = 30.0


class PodWorker(threading.Thread):
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
        self.start_time = now()
        self.started = time.monotonic()
        deadline = self.spec.get("activeDeadlineSeconds")
        self.deadline = self.started + float(deadline) if deadline is not None else None
        self.restart_policy = self.spec.get("restartPolicy", "Always")
        self.init_containers = [Container(spec, init=True) for spec in self.spec.get("initContainers") or []]
        self.containers = [Container(spec, init=False) for spec in self.spec.get("containers") or []]
        for container in self.init_containers[1:] + self.containers:
            container.state = {"waiting": {"reason": "PodInitializing"}} if self.init_containers else container.state
        self.initialized = not self.init_containers
        self.volumes: dict[str, Path] = {}
        self.acquired_targets: set[str] = set()
        self.transitions: dict[str, tuple[bool, str]] = {}

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
            self.executor.worker_done(self)

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
                materialize_volumes(self.executor, self.pod, self.pod_dir / "volumes", self.volumes)
                if self._pull_images():
                    for container in self.init_containers + self.containers:
                        self._configure(container)
                    return True
                self._report("Pending")
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

    def _pull_images(self) -> bool:
        """Resolve every container's image; those that cannot be pulled wait in ErrImagePull, then (between two
        attempts, as a kubelet backs off) in ImagePullBackOff; an unparseable reference in InvalidImageName."""
        pulled = True
        for container in self.init_containers + self.containers:
            image = container.spec.get("image", "")
            try:
                container.image = self.executor.images.resolve(image)
            except ImagePullError as error:
                pulled = False
                waiting = (container.state.get("waiting") or {}).get("reason")
                if error.reason == "ErrImagePull" and waiting == "ErrImagePull":
                    container.state = {"waiting": {"reason": "ImagePullBackOff",
                                                   "message": f'Back-off pulling image "{image}"'}}
                else:
                    container.state = {"waiting": {"reason": error.reason, "message": str(error)}}
        return pulled

    def _configure(self, container: Container) -> None:
        """The container's identity, environment and argv from its spec and image."""
        assert container.image is not None
        container.identity = identity(self.spec, container.spec, container.image)
        container.env = container_env(self.executor, self.pod, container.spec, image_env=container.image.env,
                                      home=container.identity.home)
        argv = images.container_argv(container.spec, container.image, container.env)
        if images.is_project_image(container.spec.get("image", "")):
            argv = images.host_executable(argv)
        container.argv = argv

    def _supervise(self, containers: list[Container]) -> str:
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
            changed = self._probe(containers)
            for container in containers:
                container.note_mount_namespace()
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

    def _probe(self, containers: list[Container]) -> bool:
        """Run due probes; kill containers whose liveness or startup probe failed. Whether readiness changed."""
        changed = False
        for container in containers:
            if container.process is None or container.probes is None:
                continue
            if container.kill_at is not None:
                if time.monotonic() >= container.kill_at:
                    sandbox.signal_group(container.process, signal.SIGKILL)
                continue
            was_ready = container.ready
            failure = container.probes.tick(time.monotonic())
            changed = changed or container.ready != was_ready
            if failure is not None:
                grace = container.probes.probes["liveness" if failure.startswith("Liveness") else "startup"].spec.get(
                    "terminationGracePeriodSeconds", self.spec.get("terminationGracePeriodSeconds", 30))
                logger.info("pod %s/%s: container %s %s; killing it", self.namespace, self.name, container.name,
                            failure)
                self.executor.record_event(self.pod, "Unhealthy", failure)
                self.executor.record_event(self.pod, "Killing", f"Container {container.name} failed "
                                           f"{failure.split()[0].lower()} probe, will be restarted", kind="Normal")
                container.note_mount_namespace()
                sandbox.signal_group(container.process, signal.SIGTERM)
                container.kill_at = time.monotonic() + min(float(grace if grace is not None else 30), MAX_GRACE_SECONDS)
            elif container.ready != was_ready and not container.ready:
                message = container.probes.probes["readiness"].message
                self.executor.record_event(self.pod, "Unhealthy", f"Readiness probe failed: {message}")
        return changed

    def _should_restart(self, container: Container) -> bool:
        if self.restart_policy == "Always" and not container.init:
            return True
        return self.restart_policy in ("Always", "OnFailure") and container.exit_code != 0

    def _deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _finish_stopped(self) -> None:
        if self.pod_gone or self.executor.stopping:
            return
        for container in self.init_containers + self.containers:
            if "waiting" in container.state and not container.init:
                container.state = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                                  "message": "The container could not be located when the pod "
                                                             "was terminated", "startedAt": None,
                                                  "finishedAt": now()}}
        started = [container for container in self.containers if container.exit_code is not None]
        failed = not started or any(container.exit_code != 0 for container in started)
        self._report("Failed" if failed else "Succeeded")

    def _finish_deadline(self) -> None:
        self._report("Failed", reason="DeadlineExceeded",
                     message="Pod was active on the node longer than the specified deadline")

    # -- processes -------------------------------------------------------------------------

    def _launch(self, container: Container) -> None:
        message_file = self.pod_dir / "termination" / container.name
        message_file.write_bytes(b"")
        message_file.chmod(0o666)  # whatever user the container runs as writes it, as with a kubelet
        error = images.start_error(container.argv, container.env)
        if error is not None:
            container.process = None
            container.exit_code = 128
            container.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": error,
                                              "startedAt": now(), "finishedAt": now()}}
            if self._should_restart(container):
                container.restart_at = time.monotonic() + self.executor.restart_backoff_seconds
            return
        setup = self.pod_dir / "setup" / f"{container.name}.sh"
        setup.write_text(sandbox.setup_script(
            stage=self.pod_dir / "dev" / container.name,
            mounts=container_mounts(self.volumes, container.spec, container.env, read_only_volumes(self.spec)),
            spec=container.spec, message_file=message_file, need_mount_point=self._need_mount_point,
            working_dir=container.spec.get("workingDir") or (container.image and container.image.workdir) or "/",
            identity=container.identity,
            read_only_root=bool((container.spec.get("securityContext") or {}).get("readOnlyRootFilesystem"))))
        if container.log is not None:
            container.log.finish()
        # One log file per start, named by the restart count, so `previous=true` finds the last run's.
        container.log = ContainerLog(container_logs.log_dir(self.pod_dir, container.name)
                                     / f"{container.restart_count}.log")
        try:
            process = container.process = sandbox.spawn(setup, container.argv, container.env, container.log.write_end)
        finally:
            container.log.close_write_end()
        container.kill_at = None
        prefix, env = container.identity.setpriv(), container.env
        container.probes = ContainerProbes(
            container.spec, time.monotonic(),
            run_exec=lambda argv, timeout: exec_in_container(process.pid, argv, env, prefix, timeout))
        container.started_at = now()
        container.exit_code = None
        container.release_mount_namespace()
        container.state = {"running": {"startedAt": container.started_at}}
        logger.info("pod %s/%s: started container %s (restart %d)", self.namespace, self.name, container.name,
                    container.restart_count)

    def _need_mount_point(self, path: str, is_file: bool) -> None:
        """Make sure a host mount point exists (once per path, whatever the restarts)."""
        if path not in self.acquired_targets:
            self.acquired_targets.add(path)
            self.executor.mount_points.create(Path(path), is_file=is_file)

    def _record_exit(self, container: Container) -> None:
        """Record a container's exit and kill what it left behind, as a runtime does when PID 1 exits."""
        assert container.process is not None
        sandbox.kill_leftovers(container.process, container.mount_namespace)
        container.release_mount_namespace()
        if container.log is not None:
            container.log.finish()  # every line written before the exit is in the file
        code = container.process.returncode
        exit_code = 128 - code if code < 0 else code
        container.exit_code = exit_code
        container.state = {"terminated": {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": self._termination_message(container, exit_code) or None,
            "startedAt": container.started_at,
            "finishedAt": now(),
            "containerID": f"process://{container.process.pid}",
        }}
        container.process = None

    def _termination_message(self, container: Container, exit_code: int) -> str:
        path = self.pod_dir / "termination" / container.name
        data = path.read_bytes()[:TERMINATION_MESSAGE_LIMIT] if path.exists() else b""
        policy = container.spec.get("terminationMessagePolicy", "File")
        if not data.strip() and exit_code != 0 and policy == "FallbackToLogsOnError":
            files = container_logs.attempts(self.pod_dir, container.name)
            data = container_logs.render(files[-1], tail_lines=FALLBACK_LOG_LINES)[-FALLBACK_LOG_LIMIT:] if files else b""
        return data.decode(errors="replace")

    def _kill_all(self, grace: float) -> None:
        running = [c for c in self.init_containers + self.containers if c.process is not None]
        for container in running:
            assert container.process is not None
            container.note_mount_namespace()
            sandbox.signal_group(container.process, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        end = time.monotonic() + grace
        for container in running:
            assert container.process is not None
            try:
                container.process.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                sandbox.signal_group(container.process, signal.SIGKILL)
                container.process.wait()
            self._record_exit(container)
        for container in self.init_containers + self.containers:
            container.restart_at = None
            if container.log is not None:
                container.log.finish()
                container.log = None

    # -- status ----------------------------------------------------------------------------

    def _report(self, phase: str, *, reason: str | None = None, message: str | None = None) -> None:
        if self.pod_gone or self.executor.stopping:
            return
        running = phase == "Running"
        ready = running and all(c.ready for c in self.containers)

        def condition(kind: str, value: bool, why: str | None = None) -> JSON:
            # lastTransitionTime changes only with the status, as the kubelet keeps it.
            if self.transitions.get(kind, (None,))[0] != value:
                self.transitions[kind] = (value, now())
            return {"type": kind, "status": "True" if value else "False", "lastProbeTime": None,
                    "lastTransitionTime": self.transitions[kind][1], "reason": why}

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
