"""scripts/demo, the README's main command: non-zero naming the resource that failed; Ctrl-C leaves nothing running.

The whole demo (every example reconciled) takes 2-4 minutes here and is measured by bench/demo_bench.py; these
tests run the real entry point up to the failure (cluster, Helm install, the first backup: about a minute) or
up to the interrupt, each in a temporary directory of its own so leftovers can be found.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]


def _leftovers(marker: Path) -> list[str]:
    """Processes still running whose command line, working directory or environment mention `marker`."""
    found = []
    needle = str(marker).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            seen = needle in cmdline or needle in (proc / "environ").read_bytes() or \
                str(marker) in os.readlink(proc / "cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if seen:
            found.append(proc.name + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


@pytest.fixture
def demo_tmp() -> Iterator[Path]:
    """The demo's TMPDIR, where the test bed puts every server's files (readable by the postgres user)."""
    path = Path(tempfile.mkdtemp(prefix="dbops-demo-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _demo(tmp: Path, **env: str) -> subprocess.Popen[str]:
    # the demo's own cluster, never the suite's shared one (DBOPS_TEST_KUBECONFIG): it installs the chart
    environ = {k: v for k, v in os.environ.items() if k != "DBOPS_TEST_KUBECONFIG"}
    return subprocess.Popen([str(ROOT / "scripts" / "demo")], cwd=tmp, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**environ, "TMPDIR": str(tmp), **env})


def _assert_nothing_left(tmp: Path) -> None:
    deadline = time.monotonic() + 15  # a process reaped by init may take a moment to disappear
    while (left := _leftovers(tmp)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], "processes the demo started are still running:\n" + "\n".join(left)
    assert sorted(p.name for p in tmp.iterdir()) == [], "the demo left files in its TMPDIR"


def test_demo_exits_non_zero_naming_the_failed_resource_and_cleans_up(demo_tmp: Path) -> None:
    """A backup that fails (its bucket does not exist) must not end in `exit 0`: CI and users trust the code."""
    demo = _demo(demo_tmp, DBOPS_DEMO_BREAK="missing-bucket")
    output, _ = demo.communicate(timeout=540)
    assert demo.returncode == 1, output
    assert "helm install dbops helm/dbops" in output  # the real path: the chart was installed first
    verdict = output[output.index("demo FAILED"):]
    (line,) = [line for line in verdict.splitlines() if "DatabaseBackup/mentorhub-before-release:" in line]
    assert "phase Failed (expected Succeeded)" in line, output
    assert "mentorhub-backups-missing" in line  # the message says which bucket, from the resource's status
    assert "reason -:" not in line, "the failed resource's reason is missing"
    table = output[output.index("Resources (phase, time from creation to completion)"):]
    assert re.search(r"DatabaseBackup/mentorhub-before-release +Failed +\d+s +NO\n", table), table
    assert "demo finished" not in output
    _assert_nothing_left(demo_tmp)


@pytest.mark.xfail(strict=False, reason="timing: on a quiet machine helm install can finish before the SIGINT lands (CI 2026-11-30); make the interrupt point deterministic")
def test_ctrl_c_while_helm_installs_stops_everything(demo_tmp: Path) -> None:
    """Ctrl-C (SIGINT) in the middle: exit 130, and not one etcd, apiserver, PostgreSQL, MinIO or pod survives."""
    demo = _demo(demo_tmp)
    assert demo.stdout is not None
    lines = []
    for line in demo.stdout:
        lines.append(line)
        if "helm install dbops" in line:
            break
    else:
        pytest.fail("the demo ended before installing the chart:\n" + "".join(lines))
    time.sleep(3)  # helm is at work, the operator's pod starting
    demo.send_signal(signal.SIGINT)
    output, _ = demo.communicate(timeout=180)
    assert demo.returncode == 130, "".join(lines) + output
    assert "interrupted: everything the demo started is stopped and removed" in output
    _assert_nothing_left(demo_tmp)
