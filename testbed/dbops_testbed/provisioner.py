"""PersistentVolumes on the test bed: a dynamic provisioner making a host directory per volume.

It plays an external provisioner (the protocol of kubernetes-csi/external-provisioner, without
CSI): the real persistentvolume-binder controller in kube-controller-manager marks a claim of
the test bed's StorageClass with `volume.kubernetes.io/storage-provisioner`; this makes a
directory and a `hostPath` PersistentVolume pre-bound to the claim (`claimRef`), and the binder
completes the binding. A Released volume with reclaimPolicy Delete loses its directory and its
object; Retain keeps both, as with any provisioner.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from dbops_testbed.objects import JSON, now, response_json

logger = logging.getLogger(__name__)

PROVISIONER = "dbops.io/testbed-hostpath"
STORAGE_CLASS = "dbops-testbed"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
SELECTED_PROVISIONER = ("volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner")
POLL_SECONDS = 0.5


def storage_class(name: str = STORAGE_CLASS, *, default: bool = True) -> JSON:
    """The test bed's StorageClass: Immediate binding (there is no scheduler to pick a node), Delete."""
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": annotations},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}


class HostPathProvisioner:
    """Provisions and deletes the volumes of claims whose StorageClass names `PROVISIONER`."""

    def __init__(self, api_client: Any, root: Path, *, default_class: bool = True) -> None:
        """`root`: where volume directories live. `default_class`: make the StorageClass the default."""
        from kubernetes import client

        self.core: Any = client.CoreV1Api(api_client)
        self.storage: Any = client.StorageV1Api(api_client)
        self.root = root
        self.default_class = default_class
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[str] = set()

    def start(self) -> HostPathProvisioner:
        """Create the StorageClass (if missing) and start provisioning in a background thread."""
        from kubernetes.client.exceptions import ApiException

        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.storage.create_storage_class(storage_class(default=self.default_class), _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise
        self._thread = threading.Thread(target=self._loop, name="dbops-provisioner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop provisioning (volumes and their directories stay until the caller removes them)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            try:
                self.sync()
            except Exception as error:  # a failed round must never stop the provisioner
                logger.warning("provisioner round failed: %s", error)

    def sync(self) -> None:
        """One round: provision volumes for waiting claims, delete released Delete-policy volumes."""
        volumes = {pv["metadata"]["name"]: pv for pv in response_json(
            self.core.list_persistent_volume(_preload_content=False, _request_timeout=30))["items"]}
        claims = response_json(self.core.list_persistent_volume_claim_for_all_namespaces(
            _preload_content=False, _request_timeout=30))["items"]
        for claim in claims:
            annotations = claim["metadata"].get("annotations") or {}
            if (PROVISIONER not in (annotations.get(key) for key in SELECTED_PROVISIONER)
                    or claim["spec"].get("volumeName") or claim["metadata"].get("deletionTimestamp")
                    or f"pvc-{claim['metadata']['uid']}" in volumes):
                continue
            self._provision(claim)
        for volume in volumes.values():
            annotations = volume["metadata"].get("annotations") or {}
            if (annotations.get(PROVISIONED_BY) == PROVISIONER and volume.get("status", {}).get("phase") == "Released"
                    and volume["spec"].get("persistentVolumeReclaimPolicy") == "Delete"):
                self._delete(volume)

    def _provision(self, claim: JSON) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        name = f"pvc-{meta['uid']}"
        if spec.get("volumeMode", "Filesystem") != "Filesystem":
            if meta["uid"] in self._refused:
                return
            self._refused.add(meta["uid"])
            self._event(claim, "ProvisioningFailed", f"{PROVISIONER} provisions only Filesystem volumes, "
                                                     f"not volumeMode {spec['volumeMode']}")
            return
        klass = response_json(self.storage.read_storage_class(spec["storageClassName"], _preload_content=False))
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # as common host-directory provisioners do: any pod user may write
        volume = {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": klass.get("reclaimPolicy", "Delete"),
                "storageClassName": spec["storageClassName"],
                "volumeMode": "Filesystem",
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                             "name": meta["name"], "uid": meta["uid"]},
                "hostPath": {"path": str(directory), "type": "Directory"},
            },
        }
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.create_persistent_volume(volume, _preload_content=False)
        except ApiException as error:
            if error.status != 409:
                raise
            return
        self._event(claim, "ProvisioningSucceeded", f"Successfully provisioned volume {name}", kind="Normal")
        logger.info("provisioned %s for %s/%s", name, meta["namespace"], meta["name"])

    def _delete(self, volume: JSON) -> None:
        from kubernetes.client.exceptions import ApiException

        path = Path(volume["spec"].get("hostPath", {}).get("path", ""))
        if path.is_relative_to(self.root) and path != self.root:
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(ApiException):
            self.core.delete_persistent_volume(volume["metadata"]["name"], _preload_content=False)
        logger.info("deleted released volume %s", volume["metadata"]["name"])

    def _event(self, claim: JSON, reason: str, message: str, *, kind: str = "Warning") -> None:
        meta = claim["metadata"]
        timestamp = now()
        with contextlib.suppress(Exception):
            self.core.create_namespaced_event(meta["namespace"], {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": meta["name"],
                                   "namespace": meta["namespace"], "uid": meta["uid"]},
                "reason": reason, "message": message, "type": kind, "count": 1, "firstTimestamp": timestamp,
                "lastTimestamp": timestamp, "source": {"component": PROVISIONER}}, _preload_content=False)
