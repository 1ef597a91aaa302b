"""Container probes like the kubelet's: httpGet, tcpSocket and exec; startup, readiness and liveness."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from dbops_testbed.objects import JSON

KINDS = ("startup", "readiness", "liveness")


@dataclass
class Probe:
    """One probe of one container run, with the kubelet's thresholds and timing."""

    kind: str
    spec: JSON
    next_at: float
    successes: int = 0
    failures: int = 0
    passing: bool = False
    message: str = ""

    @property
    def period(self) -> float:
        """Seconds between checks."""
        return float(self.spec.get("periodSeconds", 10))

    @property
    def timeout(self) -> float:
        """Seconds one check may take."""
        return float(self.spec.get("timeoutSeconds", 1))


@dataclass
class ContainerProbes:
    """The probes of one container run: `tick()` runs those that are due and reports what changed."""

    container: JSON
    started: float
    run_exec: Callable[[list[str], float], tuple[bool, str]]
    probes: dict[str, Probe] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for kind in KINDS:
            spec = self.container.get(f"{kind}Probe")
            if spec:
                self.probes[kind] = Probe(kind, spec, self.started + float(spec.get("initialDelaySeconds", 0)),
                                          passing=kind == "liveness")

    @property
    def started_up(self) -> bool:
        """Whether the startup probe passed (or there is none): readiness and liveness run only then."""
        probe = self.probes.get("startup")
        return probe is None or probe.passing

    @property
    def ready(self) -> bool:
        """Whether the container counts as ready (started up, readiness passing or absent)."""
        probe = self.probes.get("readiness")
        return self.started_up and (probe is None or probe.passing)

    def tick(self, now: float) -> str | None:
        """Run the probes that are due; the reason to restart the container if one says so, else None."""
        for kind in KINDS:
            probe = self.probes.get(kind)
            if probe is None or now < probe.next_at or (kind != "startup" and not self.started_up):
                continue
            if kind == "startup" and probe.passing:
                continue
            ok, message = self._check(probe.spec, probe.timeout)
            probe.next_at = time.monotonic() + probe.period
            probe.message = message
            if ok:
                probe.successes, probe.failures = probe.successes + 1, 0
                # Liveness and startup need one success; readiness its successThreshold.
                threshold = int(probe.spec.get("successThreshold", 1)) if kind == "readiness" else 1
                if probe.successes >= threshold:
                    probe.passing = True
                continue
            probe.successes, probe.failures = 0, probe.failures + 1
            if probe.failures >= int(probe.spec.get("failureThreshold", 3)):
                probe.passing = False
                if kind in ("liveness", "startup"):
                    return f"{kind.capitalize()} probe failed: {message}"
        return None

    def _check(self, spec: JSON, timeout: float) -> tuple[bool, str]:
        if "httpGet" in spec:
            return self._http(spec["httpGet"], timeout)
        if "tcpSocket" in spec:
            port = self._port(spec["tcpSocket"].get("port"))
            try:
                with socket.create_connection((spec["tcpSocket"].get("host") or "127.0.0.1", port), timeout=timeout):
                    return True, ""
            except OSError as error:
                return False, f"dial tcp 127.0.0.1:{port}: {error}"
        if "exec" in spec:
            return self.run_exec(list(spec["exec"].get("command") or []), timeout)
        return False, f"process executor: unsupported probe handler {sorted(set(spec) & {'grpc'}) or sorted(spec)}"

    def _http(self, action: JSON, timeout: float) -> tuple[bool, str]:
        scheme = str(action.get("scheme", "HTTP")).lower()
        port = self._port(action.get("port"))
        path = action.get("path") or "/"
        url = f"{scheme}://{action.get('host') or '127.0.0.1'}:{port}{path if path.startswith('/') else '/' + path}"
        request = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.36", "Accept": "*/*"})
        for header in action.get("httpHeaders") or []:
            request.add_header(header["name"], header["value"])
        context = ssl._create_unverified_context() if scheme == "https" else None  # the kubelet does not verify
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (OSError, ValueError) as error:
            return False, f'Get "{url}": {getattr(error, "reason", error)}'
        if 200 <= status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {status}"

    def _port(self, port: object) -> int:
        """A port number, or a named containerPort of the container."""
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            return int(port)
        for entry in self.container.get("ports") or []:
            if entry.get("name") == port:
                return int(entry["containerPort"])
        return 0


def exec_in_container(pid: int, argv: list[str], env: dict[str, str], prefix: list[str],
                      timeout: float) -> tuple[bool, str]:
    """Run an exec probe's command in the mount namespace of process `pid`, as the container's user."""
    if not argv:
        return False, "exec probe has no command"
    try:
        result = subprocess.run(["nsenter", f"--target={pid}", "--mount", "--", *prefix, *argv], env=env,
                                capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"command {argv!r} timed out"
    output = (result.stdout + result.stderr).decode(errors="replace").strip()
    return result.returncode == 0, output or f"command {argv!r} exited with {result.returncode}"
