"""CPU seconds of one side-by-side run, client and server: a figure the shared machine's load barely moves.

Client: the finished child processes of this bench (``RUSAGE_CHILDREN``: psql, or dbops with its squawk).
Server: the whole PostgreSQL instance: the postmaster, its live children (backends, background workers) and the
children it has reaped (their times land in its ``cutime``/``cstime``), read from ``/proc``. A backend that
ended but is not reaped yet is a zombie whose ``/proc`` entry still carries its times.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """Wall clock and CPU seconds of one run."""

    wall: float
    client_cpu: float
    server_cpu: float

    @property
    def cpu(self) -> float:
        """Client plus server CPU seconds."""
        return self.client_cpu + self.server_cpu


def _stat_times(pid: int, *, with_children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # After the ")": state is field 3 of stat(5); utime, stime, cutime, cstime are fields 14-17.
    used = int(fields[11]) + int(fields[12])
    if with_children:
        used += int(fields[13]) + int(fields[14])
    return used / _TICK


def server_cpu(data_dir: Path) -> float:
    """CPU seconds the PostgreSQL instance in ``data_dir`` used so far (postmaster and every child)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = _stat_times(postmaster, with_children=True)
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
    for pid in children.read_text().split() if children.exists() else ():
        total += _stat_times(int(pid), with_children=False)
    return total


def measure(data_dir: Path, run: Callable[[], object]) -> Usage:
    """Run ``run`` and return its wall clock, the CPU of the children it waited for, and the server's CPU."""
    time.sleep(0.2)  # let the backends of earlier runs be reaped, so their CPU is not counted here
    client = resource.getrusage(resource.RUSAGE_CHILDREN)
    server = server_cpu(data_dir)
    started = time.perf_counter()
    run()
    wall = time.perf_counter() - started
    time.sleep(0.2)  # the run's backend exits after its client: give the postmaster a moment to reap it
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Usage(wall, (after.ru_utime + after.ru_stime) - (client.ru_utime + client.ru_stime),
                 server_cpu(data_dir) - server)
