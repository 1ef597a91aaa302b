"""A container's environment as the kubelet builds it: base variables, envFrom, env values and references."""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dbops_testbed.objects import JSON
from dbops_testbed.references import MissingReference, field_value, key_data

if TYPE_CHECKING:
    from dbops_testbed.executor import ProcessNodeExecutor

logger = logging.getLogger(__name__)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def expand(text: str, env: dict[str, str]) -> str:
    """Expand $(VAR) references like the kubelet: unknown ones stay as they are, $$ escapes."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, text)


def container_env(node: ProcessNodeExecutor, pod: JSON, spec: JSON, *, image_env: dict[str, str] | None = None,
                  home: str = "/root") -> dict[str, str]:
    """The environment of container `spec` of `pod`; raises `MissingReference` while a reference is absent.

    Layered as a runtime does: PATH and HOME, the image's ENV (its PATH excepted: the host's, with
    the project's virtualenv first, stands for the image's), the service variables, the node's
    `extra_env`, then the pod's `envFrom` and `env`.
    """
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    env: dict[str, str] = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", SYSTEM_PATH)]),
        "HOME": home,
        "HOSTNAME": name,
    }
    env.update({key: value for key, value in (image_env or {}).items() if key != "PATH"})
    endpoint = node.api_endpoint
    if endpoint is not None:
        host, port = endpoint
        env.update({
            "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": f"tcp://{host}:{port}",
        })
    env.update(node.extra_env)
    for source in spec.get("envFrom") or []:
        prefix = source.get("prefix", "")
        ref = source.get("secretRef") or source.get("configMapRef") or {}
        kind = "Secret" if "secretRef" in source else "ConfigMap"
        data = key_data(node, namespace, kind, ref.get("name", ""), optional=bool(ref.get("optional")))
        for key, value in (data or {}).items():
            env[prefix + key] = os.fsdecode(value)
    for item in spec.get("env") or []:
        variable = item["name"]
        if "valueFrom" not in item:
            env[variable] = expand(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[variable] = field_value(node, pod, source["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            data = key_data(node, namespace, kind, ref.get("name", ""), optional=bool(ref.get("optional")))
            if data is not None and ref["key"] in data:
                env[variable] = os.fsdecode(data[ref["key"]])
            elif not ref.get("optional"):
                raise MissingReference("CreateContainerConfigError",
                                       f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
        else:
            logger.warning("pod %s/%s: env %s uses an unsupported valueFrom; left unset", namespace, name, variable)
    return env
