"""Acceptance tests of the test bed: the real control plane with pods run by the process executor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tests.fixtures.cluster import read_json, wait_for

from dbops_testbed.controlplane import EXTERNAL_KUBECONFIG_ENV, ControlPlane
from dbops_testbed.executor import ProcessNodeExecutor

pytestmark = pytest.mark.timeout(300)

COMPLIANT_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def job_manifest(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    """A batch/v1 Job running one container with `command` (restartPolicy Never)."""
    container: dict[str, Any] = {"name": "main", "image": "dbops:test", "command": command}
    container.update(spec.pop("container", {}))
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    pod_spec.update(spec.pop("pod", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **spec.pop("metadata", {})},
        "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}, **spec},
    }


def pod_manifest(name: str, command: list[str], **pod: Any) -> dict[str, Any]:
    """A bare v1 Pod running one container with `command` (restartPolicy Never)."""
    container: dict[str, Any] = {"name": "main", "image": "dbops:test", "command": command}
    container.update(pod.pop("container", {}))
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [container], **pod}}


def job_condition(kube_client: Any, namespace: str, name: str) -> str | None:
    """The type of the Job's terminal condition (Complete / Failed) once it is True."""
    job = read_json(client.BatchV1Api(kube_client).read_namespaced_job(name, namespace, _preload_content=False))
    for condition in job.get("status", {}).get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def job_pods(kube_client: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """The pods the Job controller made for a Job."""
    pods = read_json(client.CoreV1Api(kube_client).list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={name}", _preload_content=False))
    return list(pods["items"])


def read_pod(kube_client: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """A pod as JSON, or None once it is gone."""
    try:
        return read_json(client.CoreV1Api(kube_client).read_namespaced_pod(name, namespace, _preload_content=False))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    """The terminated state of the pod's first container."""
    return dict(pod["status"]["containerStatuses"][0]["state"]["terminated"])


def test_job_completes_with_termination_message_and_secret_env(
    kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"password": "s3cr3t"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"mode": "fast", "config.json": '{"level": 3}'}})
    script = (
        "import json, os, pathlib;"
        "cfg = json.loads(pathlib.Path('/etc/dbops-test/config.json').read_text());"
        "msg = {'password': os.environ['DB_PASSWORD'], 'mode': os.environ['MODE'], 'pod': os.environ['POD_NAME'],"
        " 'namespace': os.environ['POD_NAMESPACE'], 'level': cfg['level'], 'cwd': os.getcwd(),"
        " 'expanded': os.environ['EXPANDED'], 'dev': sorted(os.listdir('/dev'))};"
        "open('/tmp/scratch-only-in-pod', 'w').write('x');"
        "open('/dev/termination-log', 'w').write(json.dumps(msg))"
    )
    manifest = job_manifest("hello", ["python3", "-c", script], container={
        "workingDir": "/tmp",
        "env": [
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "EXPANDED", "value": "mode=$(MODE)"},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": ""}],
        "volumeMounts": [{"name": "settings", "mountPath": "/etc/dbops-test", "readOnly": True},
                         {"name": "scratch", "mountPath": "/tmp"}],
    }, pod={"volumes": [{"name": "settings", "configMap": {"name": "settings"}},
                        {"name": "scratch", "emptyDir": {}}]})
    # envFrom yields "mode" and "config.json"; MODE must come from a plain key too.
    manifest["spec"]["template"]["spec"]["containers"][0]["env"].insert(
        0, {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}})
    client.BatchV1Api(kube_client).create_namespaced_job(namespace, manifest)

    assert wait_for(lambda: job_condition(kube_client, namespace, "hello"), timeout=120,
                    message="the Job to finish") == "Complete"
    (pod,) = job_pods(kube_client, namespace, "hello")
    assert pod["status"]["phase"] == "Succeeded"
    state = terminated(pod)
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    message = json.loads(state["message"])
    assert message == {"password": "s3cr3t", "mode": "fast", "pod": pod["metadata"]["name"],
                       "namespace": namespace, "level": 3, "cwd": "/tmp", "expanded": "mode=fast",
                       "dev": ["fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
                               "termination-log", "tty", "urandom", "zero"]}
    assert not Path("/dev/termination-log").exists(), "the termination log must stay inside the pod"
    assert not Path("/tmp/scratch-only-in-pod").exists(), "/tmp is an emptyDir in the pod"
    if node_executor is not None and Path("/etc/dbops-test").exists():
        # The executor keeps the mount points it creates on the host (parallel executors share them), but
        # the ConfigMap's files were mounted only in the pod's namespace: nothing of them reaches the host.
        assert not any(Path("/etc/dbops-test").iterdir()), "the ConfigMap's files leaked onto the host"


def test_failing_job_fails_after_backoff_limit(kube_client: Any, namespace: str) -> None:
    manifest = job_manifest("broken", ["sh", "-c", "echo 'it broke' > /dev/termination-log; exit 3"],
                            backoffLimit=1)
    client.BatchV1Api(kube_client).create_namespaced_job(namespace, manifest)

    assert wait_for(lambda: job_condition(kube_client, namespace, "broken"), timeout=180,
                    message="the Job to fail") == "Failed"
    pods = job_pods(kube_client, namespace, "broken")
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        state = terminated(pod)
        assert state["exitCode"] == 3
        assert state["reason"] == "Error"
        assert state["message"].strip() == "it broke"
    job = read_json(client.BatchV1Api(kube_client).read_namespaced_job("broken", namespace, _preload_content=False))
    assert job["status"]["failed"] == 2
    reasons = {c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"}
    assert reasons == {"BackoffLimitExceeded"}


def test_missing_secret_waits_then_runs(kube_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest(
        "waits", ["sh", "-c", 'printf %s "$TOKEN" > /dev/termination-log'], container={
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]}))

    def waiting_reason() -> str | None:
        pod = read_pod(kube_client, namespace, "waits")
        statuses = (pod or {}).get("status", {}).get("containerStatuses") or []
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    # ContainerCreating comes first, as with a kubelet: wait for the reason the missing Secret gives.
    wait_for(lambda: waiting_reason() == "CreateContainerConfigError", message="the container to wait")
    core.create_namespaced_secret(namespace, {"metadata": {"name": "later"}, "stringData": {"token": "t0k"}})
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "waits")) and
                   p["status"].get("phase") == "Succeeded" and p, message="the pod to succeed")
    assert terminated(pod)["message"] == "t0k"


def test_owner_deletion_garbage_collects_job_and_pods(
    kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    core = client.CoreV1Api(kube_client)
    owner = read_json(core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "owner"}, "data": {}}, _preload_content=False))
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"],
                 "blockOwnerDeletion": True}
    client.BatchV1Api(kube_client).create_namespaced_job(
        namespace, job_manifest("owned", ["sleep", "300"], metadata={"ownerReferences": [reference]}))
    pod = wait_for(lambda: [p for p in job_pods(kube_client, namespace, "owned")
                            if p.get("status", {}).get("phase") == "Running"], message="the Job's pod to run")[0]
    if node_executor is not None:
        assert (namespace, pod["metadata"]["name"]) in node_executor.running_pods()

    core.delete_namespaced_config_map("owner", namespace, body={"propagationPolicy": "Foreground"})

    def job_gone() -> bool:
        try:
            client.BatchV1Api(kube_client).read_namespaced_job("owned", namespace, _preload_content=False)
            return False
        except ApiException as error:
            return error.status == 404

    wait_for(job_gone, timeout=120, message="the garbage collector to delete the Job")
    wait_for(lambda: read_pod(kube_client, namespace, pod["metadata"]["name"]) is None, timeout=120,
             message="the Job's pod to be deleted")
    if node_executor is not None:
        wait_for(lambda: (namespace, pod["metadata"]["name"]) not in node_executor.running_pods(), timeout=30,
                 message="the executor to forget the deleted pod")


def test_pod_deletion_kills_the_process(
    kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest("sleeper", ["sleep", "300"]))
    wait_for(lambda: (read_pod(kube_client, namespace, "sleeper") or {}).get("status", {}).get("phase") == "Running",
             message="the pod to run")
    core.delete_namespaced_pod("sleeper", namespace)  # default grace period: SIGTERM ends sleep at once
    wait_for(lambda: read_pod(kube_client, namespace, "sleeper") is None, timeout=60,
             message="the pod deletion to finish")
    if node_executor is not None:
        wait_for(lambda: (namespace, "sleeper") not in node_executor.running_pods(), timeout=30,
                 message="the executor to forget the deleted pod")


def test_restricted_namespace_refuses_privileged_pod(kube_client: Any, restricted_namespace: str) -> None:
    core = client.CoreV1Api(kube_client)
    privileged = pod_manifest("privileged", ["true"], container={"securityContext": {"privileged": True}})
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(restricted_namespace, privileged)
    assert refused.value.status == 403
    assert "violates PodSecurity" in str(refused.value.body)

    compliant = pod_manifest("compliant", ["true"], automountServiceAccountToken=False,
                             securityContext={"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                             container={"securityContext": COMPLIANT_SECURITY})
    core.create_namespaced_pod(restricted_namespace, compliant)
    wait_for(lambda: (read_pod(kube_client, restricted_namespace, "compliant") or {})
             .get("status", {}).get("phase") == "Succeeded", message="the compliant pod to succeed")


def test_active_deadline_kills_long_running_pod(
    kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest("slow", ["sleep", "300"], activeDeadlineSeconds=3))
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "slow")) and
                   p["status"].get("phase") == "Failed" and p, timeout=90, message="the deadline to kill the pod")
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert terminated(pod)["exitCode"] == 128 + 15
    if node_executor is not None:
        # The status is patched before the executor forgets the pod: wait for it to let go.
        wait_for(lambda: (namespace, "slow") not in node_executor.running_pods(), timeout=30,
                 message="the executor to forget the killed pod")


def test_job_active_deadline_fails_the_job(kube_client: Any, namespace: str) -> None:
    client.BatchV1Api(kube_client).create_namespaced_job(
        namespace, job_manifest("late", ["sleep", "300"], activeDeadlineSeconds=5))
    assert wait_for(lambda: job_condition(kube_client, namespace, "late"), timeout=120,
                    message="the Job deadline") == "Failed"
    job = read_json(client.BatchV1Api(kube_client).read_namespaced_job("late", namespace, _preload_content=False))
    assert {c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"} == {"DeadlineExceeded"}
    wait_for(lambda: all(p.get("status", {}).get("phase") == "Failed" or p["metadata"].get("deletionTimestamp")
                         for p in job_pods(kube_client, namespace, "late")), timeout=60,
             message="the Job's pods to stop")


def test_in_cluster_service_account_reaches_the_api(kube_client: Any, namespace: str,
                                                    control_plane: ControlPlane) -> None:
    if control_plane.external:
        pytest.skip("in-cluster reachability depends on the external cluster's network")
    script = ("from kubernetes import client, config; config.load_incluster_config();"
              "open('/dev/termination-log', 'w').write(client.VersionApi().get_code().git_version)")
    client.CoreV1Api(kube_client).create_namespaced_pod(namespace, pod_manifest("incluster", ["python3", "-c", script]))
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "incluster")) and
                   p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=90, message="the pod to end")
    assert terminated(pod)["message"].startswith("v1.")


def test_cronjob_creates_a_job(kube_client: Any, namespace: str) -> None:
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": job_manifest("unused", ["true"])["spec"]}},
    }
    client.BatchV1Api(kube_client).create_namespaced_cron_job(namespace, cronjob)

    def owned_jobs() -> list[dict[str, Any]]:
        jobs = read_json(client.BatchV1Api(kube_client).list_namespaced_job(namespace, _preload_content=False))
        return [job for job in jobs["items"]
                if any(ref["kind"] == "CronJob" and ref["name"] == "tick"
                       for ref in job["metadata"].get("ownerReferences") or [])]

    (job, *_) = wait_for(owned_jobs, timeout=150, interval=1.0, message="the CronJob to create a Job")
    assert wait_for(lambda: job_condition(kube_client, namespace, job["metadata"]["name"]), timeout=120,
                    message="the CronJob's Job to finish") == "Complete"
    client.BatchV1Api(kube_client).delete_namespaced_cron_job("tick", namespace)


def test_init_containers_volumes_and_read_only_mounts(
    kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "files"},
                                              "stringData": {"key": "k3y", "other": "unused"}})
    check = "\n".join([
        "import json, os, pathlib",
        "secret = pathlib.Path('/secrets/nested/key')",
        "try:",
        "    open('/secrets/new', 'w')",
        "    read_only_errno = 0",
        "except OSError as error:",
        "    read_only_errno = error.errno",
        "msg = {'greeting': pathlib.Path('/work/greeting').read_text(), 'secret': secret.read_text(),",
        "       'mode': oct(secret.stat().st_mode & 0o777), 'listing': sorted(os.listdir('/secrets')),",
        "       'read_only_errno': read_only_errno, 'sub': pathlib.Path('/sub/hello').read_text()}",
        "open('/tmp/result.json', 'w').write(json.dumps(msg))",
    ])
    volume_mounts = [{"name": "work", "mountPath": "/work"},
                     {"name": "files", "mountPath": "/secrets", "readOnly": True},
                     {"name": "work", "mountPath": "/sub", "subPath": "inner"}]
    # Root: a kubelet too makes subPath directories root's, and the secret is mode 0400.
    pod = pod_manifest("init", ["python3", "-c", check], container={
        "volumeMounts": volume_mounts, "terminationMessagePath": "/tmp/result.json"},
        securityContext={"runAsUser": 0},
        initContainers=[
            {"name": "first", "image": "dbops:test", "command": ["sh", "-c", "printf hi > /work/greeting"],
             "volumeMounts": volume_mounts},
            {"name": "second", "image": "dbops:test",
             "command": ["sh", "-c", "printf ' there' >> /work/greeting; printf x > /sub/hello"],
             "volumeMounts": volume_mounts},
        ],
        volumes=[{"name": "work", "emptyDir": {}},
                 {"name": "files", "secret": {"secretName": "files", "defaultMode": 0o400,
                                              "items": [{"key": "key", "path": "nested/key"}]}}])
    core.create_namespaced_pod(namespace, pod)
    done = wait_for(lambda: (p := read_pod(kube_client, namespace, "init")) and
                    p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=90, message="the pod to end")
    assert done["status"]["phase"] == "Succeeded", (done["status"], node_executor and node_executor.logs(namespace, "init"))
    assert [s["state"]["terminated"]["exitCode"] for s in done["status"]["initContainerStatuses"]] == [0, 0]
    assert json.loads(terminated(done)["message"]) == {
        "greeting": "hi there", "secret": "k3y", "mode": "0o400", "listing": ["nested"],
        "read_only_errno": 30, "sub": "x"}


def test_on_failure_restarts_the_container_in_place(kube_client: Any, namespace: str) -> None:
    script = "if [ -e /state/once ]; then echo second > /dev/termination-log; else touch /state/once; exit 1; fi"
    client.CoreV1Api(kube_client).create_namespaced_pod(namespace, pod_manifest(
        "flaky", ["sh", "-c", script], restartPolicy="OnFailure", volumes=[{"name": "state", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "state", "mountPath": "/state"}]}))
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "flaky")) and
                   p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=120, message="the pod to end")
    assert pod["status"]["phase"] == "Succeeded"
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["message"].strip() == "second"


def test_log_fallback_and_missing_executable(
    kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest(
        "noisy", ["sh", "-c", "echo first line; echo 'last words' >&2; exit 7"],
        container={"terminationMessagePolicy": "FallbackToLogsOnError"}))
    core.create_namespaced_pod(namespace, pod_manifest("missing", ["no-such-dbops-command"]))

    def ended(name: str) -> dict[str, Any] | None:
        pod = read_pod(kube_client, namespace, name)
        return pod if pod and pod["status"].get("phase") in ("Succeeded", "Failed") else None

    noisy = wait_for(lambda: ended("noisy"), timeout=90, message="the noisy pod to end")
    assert terminated(noisy)["exitCode"] == 7
    assert terminated(noisy)["message"] == "first line\nlast words\n"
    if node_executor is not None:
        assert node_executor.logs(namespace, "noisy") == "first line\nlast words\n"
    missing = wait_for(lambda: ended("missing"), timeout=90, message="the pod without executable to end")
    assert missing["status"]["phase"] == "Failed"
    assert terminated(missing)["reason"] == "StartError"
    assert "no-such-dbops-command" in terminated(missing)["message"]


def test_the_project_cli_runs_in_a_job(kube_client: Any, namespace: str) -> None:
    client.BatchV1Api(kube_client).create_namespaced_job(namespace, job_manifest("cli", ["dbops", "--help"]))
    assert wait_for(lambda: job_condition(kube_client, namespace, "cli"), timeout=120,
                    message="the dbops Job to finish") == "Complete"


def test_processes_left_behind_by_a_container_are_killed(
    kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None
) -> None:
    if node_executor is None:
        pytest.skip("inspects the local processes of the simulated node")
    marker = "4321.5"
    client.CoreV1Api(kube_client).create_namespaced_pod(namespace, pod_manifest(
        "daemonizer", ["sh", "-c", f"setsid sleep {marker} & sleep {marker} & sleep 1; echo started"]))
    wait_for(lambda: (read_pod(kube_client, namespace, "daemonizer") or {}).get("status", {}).get("phase")
             == "Succeeded", timeout=90, message="the pod to succeed")

    def leftovers() -> list[str]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(entry.name)
            except OSError:
                pass
        return found

    wait_for(lambda: not leftovers(), timeout=30, message="the leftover processes to be killed")


def test_control_plane_dies_with_a_killed_test_process(tmp_path: Path) -> None:
    ready = tmp_path / "server"
    script = (
        "import pathlib, sys, time\n"
        "from dbops_testbed.controlplane import running_control_plane\n"
        "with running_control_plane() as plane:\n"
        "    pids = ' '.join(str(p.pid) for p in plane.processes.values())\n"
        "    pathlib.Path(sys.argv[1]).write_text(f'{plane.log_dir} {pids}')\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "testbed")}
    env.pop(EXTERNAL_KUBECONFIG_ENV, None)
    holder = subprocess.Popen([sys.executable, "-c", script, str(ready)], env=env, start_new_session=True)
    try:
        state, *pids_text = wait_for(lambda: ready.exists() and ready.read_text(), timeout=120,
                                     message="the control plane to start").split()
        pids = [int(pid) for pid in pids_text]
        assert len(pids) == 3
    finally:
        holder.kill()
        holder.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30,
             message="etcd, kube-apiserver and kube-controller-manager to die with their parent")
    shutil.rmtree(state, ignore_errors=True)  # the killed holder could not remove its directory


def test_pod_failure_policy_fails_the_job_on_a_permanent_exit_code(kube_client: Any, namespace: str) -> None:
    manifest = job_manifest("permanent", ["sh", "-c", "exit 42"], backoffLimit=3, podFailurePolicy={"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}}]})
    client.BatchV1Api(kube_client).create_namespaced_job(namespace, manifest)
    assert wait_for(lambda: job_condition(kube_client, namespace, "permanent"), timeout=120,
                    message="the Job to fail") == "Failed"
    job = read_json(client.BatchV1Api(kube_client).read_namespaced_job("permanent", namespace,
                                                                       _preload_content=False))
    assert {c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"} == {"PodFailurePolicy"}
    assert len(job_pods(kube_client, namespace, "permanent")) == 1
