"""Pod volumes on the node: secret, configMap, emptyDir, downwardAPI, projected, hostPath, PVC; and mounts."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dbops_testbed.environment import expand
from dbops_testbed.objects import JSON
from dbops_testbed.references import MissingReference, field_value, key_data

if TYPE_CHECKING:
    from dbops_testbed.executor import ProcessNodeExecutor


@dataclass
class Mount:
    """One bind mount inside a container's mount namespace."""

    source: Path
    target: str
    read_only: bool = False


def materialize_volumes(node: ProcessNodeExecutor, pod: JSON, directory: Path, volumes: dict[str, Path]) -> None:
    """Make each of the pod's volumes a host path in `volumes` (name → path); files go under `directory`.

    Volumes already in `volumes` are kept, so a retry after `MissingReference` only does what is left.
    """
    namespace = pod["metadata"]["namespace"]
    fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        if name in volumes:
            continue
        target = directory / name
        if "hostPath" in volume:
            host = Path(volume["hostPath"]["path"])
            kind = volume["hostPath"].get("type") or ""
            if not host.exists() and kind == "DirectoryOrCreate":
                host.mkdir(parents=True)
            elif not host.exists() and kind == "FileOrCreate":
                host.touch()
            volumes[name] = host
            continue
        if "persistentVolumeClaim" in volume:
            volumes[name] = _claim_path(node, namespace, volume["persistentVolumeClaim"]["claimName"])
            continue
        files = _volume_files(node, pod, volume)
        staging = target.with_name(f".{name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for relative, (content, mode) in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode)
        if "emptyDir" in volume:
            staging.chmod(0o777)  # as the kubelet makes it: writable whatever user the containers run as
        if fs_group is not None:
            _apply_fs_group(staging, fs_group)
        staging.rename(target)
        volumes[name] = target


def _apply_fs_group(root: Path, group: int) -> None:
    """Give a volume to `fsGroup` as the kubelet does: group ownership, group access, setgid directories."""
    for path in [root, *root.rglob("*")]:
        os.chown(path, -1, group, follow_symlinks=False)
        mode = path.stat().st_mode & 0o7777
        path.chmod(mode | 0o2070 if path.is_dir() else mode | 0o040)


def _claim_path(node: ProcessNodeExecutor, namespace: str, claim: str) -> Path:
    """The host directory of the PersistentVolume bound to `claim`; waits while it is missing or unbound."""
    obj = node.read_object("PersistentVolumeClaim", namespace, claim)
    if obj is None:
        raise MissingReference("ContainerCreating", f'persistentvolumeclaim "{claim}" not found')
    volume_name = obj["spec"].get("volumeName")
    if not volume_name or obj.get("status", {}).get("phase") != "Bound":
        # A scheduler would keep the pod Pending: "pod has unbound immediate PersistentVolumeClaims".
        raise MissingReference("ContainerCreating", f'persistentvolumeclaim "{claim}" is not bound '
                                                    f"(phase {obj.get('status', {}).get('phase', 'Pending')})")
    volume = node.read_object("PersistentVolume", "", volume_name)
    if volume is None:
        raise MissingReference("ContainerCreating", f'persistentvolume "{volume_name}" not found')
    source = volume["spec"].get("hostPath") or volume["spec"].get("local")
    if source is None:
        kinds = sorted(set(volume["spec"]) & {"csi", "nfs", "iscsi", "fc", "rbd", "cephfs"}) or ["unknown"]
        raise MissingReference("ContainerCreating", f"process executor: persistentvolume {volume_name} has an "
                                                    f"unsupported source {kinds}: only hostPath and local mount here")
    path = Path(source["path"])
    if not path.is_dir():
        raise MissingReference("ContainerCreating", f"persistentvolume {volume_name}: {path} does not exist")
    return path


def read_only_volumes(pod_spec: JSON) -> set[str]:
    """Volumes whose source says readOnly (a PVC's `readOnly: true`): every mount of them is read-only."""
    return {volume["name"] for volume in pod_spec.get("volumes") or []
            if (volume.get("persistentVolumeClaim") or {}).get("readOnly")}


def container_mounts(volumes: dict[str, Path], spec: JSON, env: dict[str, str],
                     read_only: set[str] | None = None) -> list[Mount]:
    """The bind mounts of container `spec` (`subPath`/`subPathExpr` resolved, created if missing)."""
    read_only = read_only or set()
    mounts = []
    for mount in spec.get("volumeMounts") or []:
        source = volumes.get(mount["name"])
        if source is None:
            raise RuntimeError(f"volumeMount {mount['name']} names no volume of the pod")
        sub_path = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
        if sub_path:
            source = source / sub_path
            if not source.exists():
                source.mkdir(parents=True)
        mounts.append(Mount(source, mount["mountPath"], bool(mount.get("readOnly")) or mount["name"] in read_only))
    return mounts


def _volume_files(node: ProcessNodeExecutor, pod: JSON, volume: JSON) -> dict[str, tuple[bytes, int]]:
    """The files of a secret/configMap/downwardAPI/projected/emptyDir volume: path → (content, mode)."""
    if "emptyDir" in volume:
        return {}
    if "secret" in volume:
        source = volume["secret"]
        return _key_files(node, pod, "Secret", source.get("secretName", ""), source, source.get("defaultMode", 0o644))
    if "configMap" in volume:
        source = volume["configMap"]
        return _key_files(node, pod, "ConfigMap", source.get("name", ""), source, source.get("defaultMode", 0o644))
    if "downwardAPI" in volume:
        source = volume["downwardAPI"]
        return _downward_files(node, pod, source.get("items") or [], source.get("defaultMode", 0o644))
    if "projected" in volume:
        mode = volume["projected"].get("defaultMode", 0o644)
        files: dict[str, tuple[bytes, int]] = {}
        for source in volume["projected"].get("sources") or []:
            if "secret" in source:
                files.update(_key_files(node, pod, "Secret", source["secret"].get("name", ""), source["secret"], mode))
            elif "configMap" in source:
                files.update(_key_files(node, pod, "ConfigMap", source["configMap"].get("name", ""),
                                        source["configMap"], mode))
            elif "downwardAPI" in source:
                files.update(_downward_files(node, pod, source["downwardAPI"].get("items") or [], mode))
            elif "serviceAccountToken" in source:
                token_source = source["serviceAccountToken"]
                token = node.service_account_token(
                    pod, token_source.get("audience"), int(token_source.get("expirationSeconds", 3600)))
                files[token_source["path"]] = (token.encode(), mode)
        return files
    kinds = sorted(set(volume) - {"name"})
    raise MissingReference("ContainerCreating", f"process executor: unsupported volume type {kinds}")


def _key_files(node: ProcessNodeExecutor, pod: JSON, kind: str, name: str, source: JSON,
               mode: int) -> dict[str, tuple[bytes, int]]:
    namespace = pod["metadata"]["namespace"]
    data = key_data(node, namespace, kind, name, optional=bool(source.get("optional")))
    if data is None:
        return {}
    items = source.get("items")
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise MissingReference("ContainerCreating", f'couldn\'t find key {item["key"]} in {kind} {namespace}/{name}')
        files[item["path"]] = (data[item["key"]], item.get("mode", mode))
    return files


def _downward_files(node: ProcessNodeExecutor, pod: JSON, items: list[JSON], mode: int) -> dict[str, tuple[bytes, int]]:
    files = {}
    for item in items:
        if "fieldRef" in item:
            value = field_value(node, pod, item["fieldRef"]["fieldPath"], volume=True)
            files[item["path"]] = (value.encode(), item.get("mode", mode))
    return files
