"""One container on the node: its spec, process, state and probes, and its entry in the pod's status."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from dbops_testbed import sandbox
from dbops_testbed.container_logs import ContainerLog
from dbops_testbed.images import ImageConfig
from dbops_testbed.objects import JSON
from dbops_testbed.probes import ContainerProbes
from dbops_testbed.security import Identity


@dataclass
class Container:
    """One container's spec and its runtime state on this node."""

    spec: JSON
    init: bool
    restart_count: int = 0
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: ContainerLog | None = None
    started_at: str | None = None
    restart_at: float | None = None
    exit_code: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    mount_namespace: str | None = None
    namespace_fd: int | None = None
    image: ImageConfig | None = None
    identity: Identity = field(default_factory=lambda: Identity(0, 0))
    probes: ContainerProbes | None = None
    kill_at: float | None = None

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self.spec["name"])

    def note_mount_namespace(self) -> None:
        """Remember the container's mount namespace once its process has entered it."""
        if self.mount_namespace is None and self.process is not None:
            held = sandbox.hold_mount_namespace(self.process)
            if held is not None:
                self.mount_namespace, self.namespace_fd = held

    def release_mount_namespace(self) -> None:
        """Forget the mount namespace and close the descriptor holding it."""
        if self.namespace_fd is not None:
            os.close(self.namespace_fd)
        self.mount_namespace = self.namespace_fd = None

    @property
    def ready(self) -> bool:
        """Running, started up and passing its readiness probe (if it has one); never for init containers."""
        return "running" in self.state and not self.init and (self.probes is None or self.probes.ready)

    def status(self) -> JSON:
        """This container's entry in the pod's (init)containerStatuses."""
        running = "running" in self.state
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": f"process-executor://{self.spec.get('image', '')}",
            "containerID": f"process://{self.process.pid}" if self.process else None,
            "ready": self.ready,
            "started": running and (self.probes is None or self.probes.started_up),
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
