"""The test bed runs workloads the way a cluster does: images, users, probes, Deployments, in-cluster RBAC."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from tests.fixtures.cluster import read_json, wait_for
from tests.integration.test_testbed_cluster import pod_manifest, read_pod, terminated

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.executor import ProcessNodeExecutor
from dbops_testbed.images import dockerfile_config
from dbops_testbed.ports import free_port
from dbops_testbed.sandbox import IMAGE_PATHS

pytestmark = pytest.mark.integration

# A small HTTP server standing in for an application with health endpoints. /ready answers 503
# until READY_AFTER seconds have passed; /healthz answers 500 on the first run of the container
# (remembered in the emptyDir /state) and 200 after a restart.
SERVER = """
import http.server, os, pathlib, sys, time
start = time.monotonic()
state = pathlib.Path('/state/first-run-done')
first_run = not state.exists()
state.touch()
ready_after = float(os.environ.get('READY_AFTER', '0'))

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/ready':
            code = 200 if time.monotonic() - start >= ready_after else 503
        elif self.path == '/healthz':
            code = 500 if first_run and os.environ.get('SICK_FIRST_RUN') else 200
        else:
            code = 404
        self.send_response(code); self.end_headers(); self.wfile.write(b'ok')
    def log_message(self, *args):
        pass

http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Handler).serve_forever()
"""


def ended(kube_client: Any, namespace: str, name: str) -> dict[str, Any]:
    return wait_for(lambda: (p := read_pod(kube_client, namespace, name)) and
                    p["status"].get("phase") in ("Succeeded", "Failed") and p, timeout=90,
                    message=f"pod {name} to end")


def condition(pod: dict[str, Any], kind: str) -> str | None:
    for entry in pod.get("status", {}).get("conditions") or []:
        if entry["type"] == kind:
            return str(entry["status"])
    return None


def server_container(port: int, **extra: Any) -> dict[str, Any]:
    return {"name": "app", "image": "ghcr.io/dbops/dbops:0.1.0", "command": [sys.executable, "-c", SERVER, str(port)],
            "ports": [{"name": "http", "containerPort": port}],
            "volumeMounts": [{"name": "state", "mountPath": "/state"}], **extra}


def test_other_images_wait_in_err_image_pull(kube_client: Any, namespace: str,
                                              node_executor: ProcessNodeExecutor | None) -> None:
    if node_executor is None:
        pytest.skip("a real cluster pulls images")
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest("nginx", ["true"], containers=[
        {"name": "web", "image": "docker.io/library/nginx:1.27"}]))
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "nginx")) and
                   (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
                   .get("reason") == "ErrImagePull" and p, timeout=60, message="ErrImagePull")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert 'Failed to pull image "docker.io/library/nginx:1.27"' in waiting["message"]
    assert "repository \"dbops\"" in waiting["message"] and "tags 0.1.0, bench, test" in waiting["message"]
    assert pod["status"]["phase"] == "Pending"
    # between two attempts the kubelet backs off, as a real one does
    backoff = wait_for(lambda: (p := read_pod(kube_client, namespace, "nginx")) and
                       (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
                       .get("reason") == "ImagePullBackOff" and p, timeout=60, message="ImagePullBackOff")
    assert backoff["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == \
        'Back-off pulling image "docker.io/library/nginx:1.27"'


def backing_off(kube_client: Any, namespace: str, name: str) -> dict[str, Any] | None:
    pod = read_pod(kube_client, namespace, name)
    waiting = ((pod or {}).get("status", {}).get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
    return pod if waiting.get("reason") == "ImagePullBackOff" else None


def test_a_mistyped_tag_of_the_project_image_cannot_be_pulled(kube_client: Any, namespace: str,
                                                              node_executor: ProcessNodeExecutor | None) -> None:
    """The node has the project's image under the tags tests give it, in any registry, not under every tag: a
    typo in a tag (or an untagged reference, `latest`) waits in ErrImagePull then ImagePullBackOff, as on a
    cluster whose registry has no such tag."""
    if node_executor is None:
        pytest.skip("a real cluster pulls images")
    core = client.CoreV1Api(kube_client)
    for name, image in (("typo", "dbops:tset"), ("untagged", "mirror.example/dbops"),
                        ("other-version", "ghcr.io/dbops/dbops:0.0.9")):
        core.create_namespaced_pod(namespace, pod_manifest(name, ["true"], containers=[
            {"name": "main", "image": image, "command": ["true"]}]))
    core.create_namespaced_pod(namespace, pod_manifest("mirrored", ["true"], containers=[
        {"name": "main", "image": "mirror.example/platform/dbops:test", "command": ["true"]}]))
    for name, image in (("typo", "dbops:tset"), ("untagged", "mirror.example/dbops"),
                        ("other-version", "ghcr.io/dbops/dbops:0.0.9")):
        pod = wait_for(functools.partial(backing_off, kube_client, namespace, name), timeout=60,
                       message=f"{name}: ImagePullBackOff")
        assert pod["status"]["phase"] == "Pending"
        assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"] == \
            f'Back-off pulling image "{image}"'
    assert ended(kube_client, namespace, "mirrored")["status"]["phase"] == "Succeeded"


def test_an_unparseable_image_waits_in_invalid_image_name(kube_client: Any, namespace: str,
                                                          node_executor: ProcessNodeExecutor | None) -> None:
    if node_executor is None:
        pytest.skip("a real cluster's kubelet says so itself")
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest("upper", ["true"], containers=[
        {"name": "web", "image": "Registry.example/DBOPS:1"}]))
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "upper")) and
                   (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
                   .get("reason") == "InvalidImageName" and p, timeout=60, message="InvalidImageName")
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert 'couldn\'t parse image name "Registry.example/DBOPS:1": invalid reference format' in waiting["message"]


def test_project_image_runs_its_entrypoint_as_its_user(kube_client: Any, namespace: str,
                                                       node_executor: ProcessNodeExecutor | None) -> None:
    core = client.CoreV1Api(kube_client)
    # No command: the Dockerfile's ENTRYPOINT with the pod's args in place of its CMD.
    core.create_namespaced_pod(namespace, pod_manifest("entry", [], containers=[
        {"name": "main", "image": "registry.internal:5000/platform/dbops:0.1.0", "args": ["--version"]}]))
    # The image's USER, HOME and WORKDIR when the pod says nothing.
    script = ("import os, pathlib; pathlib.Path('/dev/termination-log').write_text("
              "f'{os.getuid()} {os.getgid()} {sorted(os.getgroups())} {os.environ[\"HOME\"]} {os.getcwd()}')")
    core.create_namespaced_pod(namespace, pod_manifest("user", ["python3", "-c", script]))
    entry = ended(kube_client, namespace, "entry")
    assert entry["status"]["phase"] == "Succeeded", entry["status"]
    if node_executor is not None:
        assert node_executor.logs(namespace, "entry").strip() == "dbops 0.1.0"
    user = ended(kube_client, namespace, "user")
    config = dockerfile_config()
    uid, gid = config.user.split(":") if config.user else ("0", "0")
    assert terminated(user)["message"] == f"{uid} {gid} [] {config.env.get('HOME', '/')} {config.workdir or '/'}"


def test_run_as_user_group_and_fs_group_apply_to_the_process_and_volumes(
        kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None) -> None:
    script = ("import os, pathlib; p = pathlib.Path('/scratch/file'); p.write_text('x');"
              "pathlib.Path('/dev/termination-log').write_text(json.dumps("
              "[os.getuid(), os.getgid(), sorted(os.getgroups()), p.stat().st_uid, p.stat().st_gid,"
              " sorted(os.listdir('/root')) if os.path.isdir('/root') else []]))")
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest(
        "ids", ["python3", "-c", "import json; " + script],
        securityContext={"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000, "supplementalGroups": [4000]},
        volumes=[{"name": "scratch", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}))
    pod = ended(kube_client, namespace, "ids")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    uid, gid, groups, file_uid, file_gid, root_listing = json.loads(terminated(pod)["message"])
    # fsGroup: the emptyDir is the group's (setgid), so the new file is too.
    assert (uid, gid, groups, file_uid, file_gid) == (1000, 2000, [3000, 4000], 1000, 3000)
    if node_executor is not None:  # the host's home is not the container's to read: only the image's paths
        image_roots = {path.relative_to("/root").parts[0] for path in IMAGE_PATHS if path.is_relative_to("/root")}
        assert set(root_listing) <= image_roots, root_listing


def test_run_as_non_root_refuses_a_root_user(kube_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest(
        "rooted", ["true"], securityContext={"runAsNonRoot": True, "runAsUser": 0}))
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "rooted")) and
                   (p["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
                   .get("reason") == "CreateContainerConfigError" and p, timeout=60,
                   message="CreateContainerConfigError")
    assert "runAsNonRoot" in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]


def test_deployment_rolls_out_through_its_readiness_probe(kube_client: Any, namespace: str) -> None:
    port = free_port()
    container = server_container(port, env=[{"name": "READY_AFTER", "value": "8"}],
                                 readinessProbe={"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1})
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "strategy": {"type": "Recreate"},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [container],
                                       "volumes": [{"name": "state", "emptyDir": {}}]}}},
    }
    client.AppsV1Api(kube_client).create_namespaced_deployment(namespace, deployment)
    core = client.CoreV1Api(kube_client)

    def web_pod() -> dict[str, Any] | None:
        pods = read_json(core.list_namespaced_pod(namespace, label_selector="app=web", _preload_content=False))
        return pods["items"][0] if pods["items"] else None

    running = wait_for(lambda: (p := web_pod()) and p["status"].get("phase") == "Running" and p, timeout=60,
                       message="the Deployment's pod to run")
    assert condition(running, "Ready") == "False"  # the server answers 503 for its first 8 s
    ready = wait_for(lambda: (p := web_pod()) and condition(p, "Ready") == "True" and p, timeout=60,
                     message="the pod to turn Ready through its readiness probe")
    assert ready["status"]["containerStatuses"][0]["ready"] is True

    def available() -> dict[str, Any] | None:
        body = read_json(client.AppsV1Api(kube_client).read_namespaced_deployment(
            "web", namespace, _preload_content=False))
        return body if body.get("status", {}).get("availableReplicas") == 1 else None

    status = wait_for(available, timeout=60, message="the Deployment to be available")["status"]
    progressing = {c["type"]: c.get("reason") for c in status["conditions"]}
    assert progressing.get("Progressing") == "NewReplicaSetAvailable", status
    client.AppsV1Api(kube_client).delete_namespaced_deployment("web", namespace)


def test_failing_liveness_probe_restarts_the_container(kube_client: Any, namespace: str,
                                                       node_executor: ProcessNodeExecutor | None) -> None:
    port = free_port()
    container = server_container(port, env=[{"name": "SICK_FIRST_RUN", "value": "1"}],
                                 # The startup probe gates liveness until the server listens, however slow
                                 # the machine: only the 500s of the first run can fail it.
                                 startupProbe={"tcpSocket": {"port": "http"}, "periodSeconds": 1,
                                               "failureThreshold": 120},
                                 livenessProbe={"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 1,
                                                "failureThreshold": 2},
                                 readinessProbe={"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 1})
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sick"},
        "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 2, "containers": [container],
                 "volumes": [{"name": "state", "emptyDir": {}}]}})
    last: dict[str, Any] = {}

    def restarted_and_ready() -> dict[str, Any] | None:
        pod = read_pod(kube_client, namespace, "sick") or {}
        last.update(pod)
        restarts = (pod.get("status", {}).get("containerStatuses") or [{}])[0].get("restartCount", 0)
        return pod if restarts >= 1 and condition(pod, "Ready") == "True" else None

    try:
        pod = wait_for(restarted_and_ready, timeout=180,
                       message="the container to be restarted by its liveness probe and turn Ready")
    except BaseException:
        logs = node_executor.logs(namespace, "sick") if node_executor is not None else ""
        print(json.dumps(last.get("status"), indent=1), logs)
        raise
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1, status  # healthy after the restart: no more restarts
    assert status["lastState"]["terminated"]["exitCode"] in (137, 143), status
    events = read_json(core.list_namespaced_event(namespace, field_selector="involvedObject.name=sick",
                                                  _preload_content=False))["items"]
    assert any(e["reason"] == "Unhealthy" and "Liveness probe failed: HTTP probe failed with statuscode: 500"
               in e["message"] for e in events), [e["message"] for e in events]


def test_a_pod_uses_its_service_account_rbac_in_cluster(kube_client: Any, namespace: str,
                                                         control_plane: ControlPlane) -> None:
    if control_plane.external:
        pytest.skip("in-cluster reachability depends on the external cluster's network")
    core = client.CoreV1Api(kube_client)
    rbac = client.RbacAuthorizationV1Api(kube_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "cm-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                    "name": "cm-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})
    script = (
        "import json, os; from kubernetes import client, config; config.load_incluster_config()\n"
        "api = client.CoreV1Api(); ns = open('/var/run/secrets/kubernetes.io/serviceaccount/namespace').read()\n"
        "names = [c.metadata.name for c in api.list_namespaced_config_map(ns).items]\n"
        "try:\n    api.list_namespaced_secret(ns); secrets = 'allowed'\n"
        "except client.ApiException as e:\n    secrets = e.status\n"
        "open('/dev/termination-log', 'w').write(json.dumps([os.getuid(), 'kube-root-ca.crt' in names, secrets]))\n")
    core.create_namespaced_pod(namespace, pod_manifest("sa", ["python3", "-c", script], serviceAccountName="reader"))
    pod = ended(kube_client, namespace, "sa")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert json.loads(terminated(pod)["message"]) == [65532, True, 403]


def claim_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}}


def bound_volume(kube_client: Any, namespace: str, claim: str) -> dict[str, Any]:
    """The PersistentVolume bound to `claim`, once the binder has bound them."""
    core = client.CoreV1Api(kube_client)
    body = wait_for(lambda: (c := read_json(core.read_namespaced_persistent_volume_claim(
        claim, namespace, _preload_content=False))) and c.get("status", {}).get("phase") == "Bound" and c,
        timeout=60, message=f"claim {claim} to be bound")
    return read_json(core.read_persistent_volume(body["spec"]["volumeName"], _preload_content=False))


def test_a_claim_is_provisioned_bound_mounted_and_deleted_with_its_directory(
        kube_client: Any, namespace: str, node_executor: ProcessNodeExecutor | None) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("data"))
    volume = bound_volume(kube_client, namespace, "data")
    claim = read_json(core.read_namespaced_persistent_volume_claim("data", namespace, _preload_content=False))
    assert volume["metadata"]["name"] == f"pvc-{claim['metadata']['uid']}"
    assert claim["spec"]["storageClassName"]  # the default StorageClass, set at admission
    assert volume["spec"]["claimRef"]["name"] == "data" and volume["status"]["phase"] == "Bound"
    # Two pods in turn see the same files, the second read-only through the claim's readOnly.
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    core.create_namespaced_pod(namespace, pod_manifest(
        "writer", ["sh", "-c", "echo kept > /data/file"], volumes=volumes,
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))
    assert ended(kube_client, namespace, "writer")["status"]["phase"] == "Succeeded"
    read_only = [{"name": "data", "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}]
    core.create_namespaced_pod(namespace, pod_manifest(
        "reader", ["sh", "-c", "cat /data/file > /dev/termination-log; touch /data/other 2>/dev/null && exit 1; exit 0"],
        volumes=read_only, container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))
    reader = ended(kube_client, namespace, "reader")
    assert reader["status"]["phase"] == "Succeeded" and terminated(reader)["message"] == "kept\n"
    if node_executor is not None:
        directory = volume["spec"]["hostPath"]["path"]
        assert (Path(directory) / "file").read_text() == "kept\n"
    # Reclaim policy Delete: deleting the claim removes the volume and its directory.
    for pod in ("writer", "reader"):
        core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
    core.delete_namespaced_persistent_volume_claim("data", namespace)

    def volume_gone() -> bool:
        try:
            core.read_persistent_volume(volume["metadata"]["name"], _preload_content=False)
            return False
        except client.ApiException as error:
            return error.status == 404

    wait_for(volume_gone, timeout=90, message="the released volume to be deleted")
    if node_executor is not None:
        assert not Path(volume["spec"]["hostPath"]["path"]).exists()


def test_a_pod_waits_for_an_unbound_claim(kube_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("nowhere", storageClassName="none-such"))
    core.create_namespaced_pod(namespace, pod_manifest(
        "waiting", ["true"], volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "nowhere"}}],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))
    pod = wait_for(lambda: (p := read_pod(kube_client, namespace, "waiting")) and
                   "is not bound" in json.dumps(p["status"].get("containerStatuses") or []) and p, timeout=60,
                   message="the pod to wait for its claim")
    assert pod["status"]["phase"] == "Pending"


def test_read_only_root_filesystem_leaves_only_volumes_writable(kube_client: Any, namespace: str) -> None:
    script = ("import errno, json, os\n"
              "def attempt(path):\n"
              "    try:\n        open(path, 'w').write('x'); return 'written'\n"
              "    except OSError as error:\n        return errno.errorcode[error.errno]\n"
              "result = [attempt('/tmp/dbops-rofs-probe'), attempt('/scratch/file')]\n"
              "open('/dev/termination-log', 'w').write(json.dumps(result))\n")
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, pod_manifest(
        "rofs", ["python3", "-c", script], volumes=[{"name": "scratch", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                   "securityContext": {"readOnlyRootFilesystem": True}}))
    pod = ended(kube_client, namespace, "rofs")
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert json.loads(terminated(pod)["message"]) == ["EROFS", "written"]
    assert not Path("/tmp/dbops-rofs-probe").exists()


def test_leftover_killing_never_hits_a_later_container_that_reused_the_namespace_identity() -> None:
    """Regression: a freed mount namespace's inode number is reused at once by the next one.

    The executor kills whatever is left in an exited container's namespace; matching a stale
    identity killed the next container started (exit code 137 in unrelated pods).
    """
    import subprocess
    import time

    from dbops_testbed import sandbox

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sleep", "30"],
                                start_new_session=True)

    first = start()
    held = wait_for(lambda: sandbox.hold_mount_namespace(first), timeout=10, message="the first namespace")
    namespace, descriptor = held
    first.kill()
    first.wait()
    second = start()
    try:
        _, second_descriptor = wait_for(lambda: sandbox.hold_mount_namespace(second), timeout=10,
                                        message="the second namespace")
        os.close(second_descriptor)
        sandbox.kill_leftovers(first, namespace)
        time.sleep(0.2)
        assert second.poll() is None, "the later container was killed"
    finally:
        os.close(descriptor)
        second.kill()
        second.wait()
