"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from dbops_testbed.binaries import testbed_bin
from dbops_testbed.pki import ADMIN_USER, KUBELET_CLIENT_USER, kubeconfig_yaml, make_pki
from dbops_testbed.ports import free_port

EXTERNAL_KUBECONFIG_ENV = "DBOPS_TEST_KUBECONFIG"
"""Set to a kubeconfig path to use an existing cluster instead of starting a control plane."""

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

CONTROLLERS = (
    "job-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "ttl-after-finished-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    # ResourceQuota usage, so the ResourceQuota admission plugin enforces a namespace's quotas as on a cluster.
    "resourcequota-controller",
    # Workloads the way `helm install --wait` and a Deployment rollout need them.
    "deployment-controller",
    "replicaset-controller",
    "endpointslice-controller",
    "disruption-controller",
    # PersistentVolumeClaims: the real binder binds claims to the test bed provisioner's volumes.
    "persistentvolume-binder-controller",
    "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller",
)
"""The kube-controller-manager controllers the test bed runs (no node lifecycle, no pod GC, no scheduler)."""

ADMISSION_PLUGINS = (
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "PodSecurity",
    "NodeRestriction",
    "ResourceQuota",
)

STARTUP_TIMEOUT = 120.0


def die_with_parent(argv: Sequence[str]) -> list[str]:
    """Prefix a command so it is SIGKILLed when the thread that started it dies (even by SIGKILL)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *argv] if setpriv else list(argv)


@dataclass
class ControlPlane:
    """A Kubernetes API endpoint the tests talk to: the local control plane or an existing cluster."""

    kubeconfig: Path
    server: str
    bin_dir: Path | None
    external: bool = False
    log_dir: Path | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    commands: dict[str, list[str]] = field(default_factory=dict, repr=False)
    ready_checks: dict[str, Any] = field(default_factory=dict, repr=False)

    def restart(self, *components: str, down_seconds: float = 0.0) -> None:
        """SIGKILL components (e.g. etcd and kube-apiserver), start them again with the same flags, data and
        ports, and wait until each is ready (fault injection)."""
        for name in components:
            _stop_process(self.processes[name], signal.SIGKILL)
        time.sleep(down_seconds)
        for name in components:
            assert self.log_dir is not None
            with open(self.log_dir / f"{name}.log", "ab") as log:
                self.processes[name] = subprocess.Popen(
                    self.commands[name], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True)
            _wait_until(self, name, self.ready_checks[name])

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run kubectl against this cluster and return its standard output."""
        binary = str(self.bin_dir / "kubectl") if self.bin_dir else (shutil.which("kubectl") or "kubectl")
        result = subprocess.run(
            [binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin, capture_output=True, text=True, timeout=120,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def api_client(self) -> Any:
        """A new `kubernetes.client.ApiClient` configured from this cluster's kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def log_tail(self, component: str, size: int = 4000) -> str:
        """The end of one component's log (etcd, kube-apiserver, kube-controller-manager)."""
        if self.log_dir is None:
            return ""
        path = self.log_dir / f"{component}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""


@contextlib.contextmanager
def running_control_plane() -> Iterator[ControlPlane]:
    """Start etcd, kube-apiserver and kube-controller-manager on free ports; stop them and clean up after.

    With `DBOPS_TEST_KUBECONFIG` set, yield that existing cluster instead and start nothing.
    """
    external = os.environ.get(EXTERNAL_KUBECONFIG_ENV)
    if external:
        yield _external_control_plane(Path(external))
        return
    root = Path(tempfile.mkdtemp(prefix="dbops-k8s-"))
    plane = ControlPlane(kubeconfig=root / "admin.kubeconfig", server="", bin_dir=testbed_bin(), log_dir=root)
    logs: list[IO[bytes]] = []
    try:
        _start(plane, root, logs)
        yield plane
    finally:
        for name in reversed(list(plane.processes)):
            _stop_process(plane.processes[name])
        for handle in logs:
            handle.close()
        shutil.rmtree(root, ignore_errors=True)


def _external_control_plane(kubeconfig: Path) -> ControlPlane:
    data = yaml.safe_load(kubeconfig.read_text())
    current = data.get("current-context")
    contexts = {item["name"]: item["context"] for item in data.get("contexts", [])}
    clusters = {item["name"]: item["cluster"] for item in data.get("clusters", [])}
    context = contexts.get(current) if current else next(iter(contexts.values()), None)
    cluster = clusters.get(context["cluster"]) if context else next(iter(clusters.values()), None)
    server = cluster["server"] if cluster else ""
    override = os.environ.get("DBOPS_TESTBED_BIN")
    return ControlPlane(kubeconfig=kubeconfig, server=server, bin_dir=Path(override) if override else None,
                        external=True)


def _start(plane: ControlPlane, root: Path, logs: list[IO[bytes]]) -> None:
    assert plane.bin_dir is not None
    pki = make_pki(root / "pki")
    etcd_port, etcd_peer_port = free_port(), free_port()
    api_port, kcm_port = free_port(), free_port()
    plane.server = f"https://127.0.0.1:{api_port}"

    def launch(name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        log = open(root / f"{name}.log", "wb")  # noqa: SIM115
        logs.append(log)
        plane.commands[name] = die_with_parent([str(plane.bin_dir / name if plane.bin_dir else name), *args])
        process = subprocess.Popen(
            plane.commands[name], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        plane.processes[name] = process
        return process

    etcd_url = f"http://127.0.0.1:{etcd_port}"
    launch("etcd", [
        f"--data-dir={root / 'etcd'}",
        f"--listen-client-urls={etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
    ])
    plane.ready_checks["etcd"] = lambda: _http_ok(f"{etcd_url}/health")
    _wait_until(plane, "etcd", plane.ready_checks["etcd"])

    admission_config = root / "admission.yaml"
    admission_config.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [{
            "name": "PodSecurity",
            "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration",
                "defaults": {
                    "enforce": "privileged", "enforce-version": "latest",
                    "audit": "privileged", "audit-version": "latest",
                    "warn": "privileged", "warn-version": "latest",
                },
                "exemptions": {"usernames": [], "runtimeClasses": [], "namespaces": []},
            },
        }],
    }))
    launch("kube-apiserver", [
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}",
        f"--cert-dir={root / 'apiserver-certs'}",
        f"--tls-cert-file={pki['apiserver.crt']}",
        f"--tls-private-key-file={pki['apiserver.key']}",
        f"--client-ca-file={pki['ca.crt']}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki['sa.pub']}",
        f"--service-account-signing-key-file={pki['sa.key']}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        f"--enable-admission-plugins={','.join(ADMISSION_PLUGINS)}",
        f"--admission-control-config-file={admission_config}",
        "--profiling=false",
        # `pods/log` (kubectl logs) is proxied to the node's kubelet API, as on a cluster: the API server
        # authenticates with its kubelet client certificate and reaches the node's InternalIP on the port the
        # Node advertises (status.daemonEndpoints). Like a kubeadm cluster, it does not verify the kubelet's
        # self-signed serving certificate (no --kubelet-certificate-authority).
        f"--kubelet-client-certificate={pki['kubelet-client.crt']}",
        f"--kubelet-client-key={pki['kubelet-client.key']}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
    ])
    context = ssl.create_default_context(cafile=str(pki["ca.crt"]))
    context.load_cert_chain(str(pki["admin.crt"]), str(pki["admin.key"]))
    plane.ready_checks["kube-apiserver"] = lambda: _http_ok(f"{plane.server}/readyz", context)
    _wait_until(plane, "kube-apiserver", plane.ready_checks["kube-apiserver"])

    plane.kubeconfig.write_text(kubeconfig_yaml(plane.server, pki, "admin", ADMIN_USER))
    # The kubelet authorizes the API server's log requests (SubjectAccessReview on nodes/proxy): kubeadm's binding.
    plane.kubectl("create", "clusterrolebinding", "kube-apiserver-kubelet-api-admin",
                  "--clusterrole=system:kubelet-api-admin", f"--user={KUBELET_CLIENT_USER}")
    kcm_kubeconfig = root / "kube-controller-manager.kubeconfig"
    kcm_kubeconfig.write_text(kubeconfig_yaml(plane.server, pki, "kcm", "system:kube-controller-manager"))
    launch("kube-controller-manager", [
        f"--kubeconfig={kcm_kubeconfig}",
        f"--controllers={','.join(CONTROLLERS)}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki['sa.key']}",
        f"--root-ca-file={pki['ca.crt']}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--bind-address=127.0.0.1",
        f"--secure-port={kcm_port}",
        f"--cert-dir={root / 'kcm-certs'}",
        "--profiling=false",
    ])
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    _wait_until(plane, "kube-controller-manager", lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", insecure))


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def _wait_until(plane: ControlPlane, component: str, ready: Any) -> None:
    process = plane.processes[component]
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{component} exited ({process.returncode}): {plane.log_tail(component)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{component} not ready after {STARTUP_TIMEOUT:.0f}s: {plane.log_tail(component)}")
        time.sleep(0.2)


def _stop_process(process: subprocess.Popen[bytes], first: signal.Signals = signal.SIGTERM) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, first)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
