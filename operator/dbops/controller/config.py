"""The operator's configuration: runner image, watched namespaces, ports."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from dbops.specs.jobs import DEFAULT_IMAGE

IMAGE_ENV = "DBOPS_IMAGE"


@dataclass
class OperatorConfig:
    """Settings the handlers read; set once by ``dbops operator`` before Kopf starts."""

    image: str = field(default_factory=lambda: os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE)
    namespaces: list[str] = field(default_factory=list)
    """Watched namespaces; empty means all namespaces."""
    metrics_port: int = 8080
    """Port of /metrics (0 disables it)."""
    health_port: int = 8081
    """Port of /healthz (0 disables it)."""
    recheck_seconds: float = 30.0
    """How often unfinished resources are re-read even without events (spread out when more than
    ``recheck_seconds`` × requeue.RECHECKS_PER_SECOND resources are unfinished)."""
    stall_seconds: float = 600.0
    """How long a retried error may last before it shows on the resource (a missing reference then fails it)."""
    start_grace_seconds: float = 180.0
    """How long a Job's pod may wait on its image or configuration before the resource fails (see pod_start)."""
    max_workers: int = 16
    """Threads running the (blocking) handlers."""
    job_env: dict[str, str] = field(default_factory=dict)
    """Extra plain env vars for every runner container (e.g. DBOPS_PG_BIN_DIR, proxies); never credentials."""
    trigger_cluster_role: str = ""
    """The installed ClusterRole that schedules' trigger ServiceAccounts are bound to; empty: a Role each."""


CONFIG = OperatorConfig()
