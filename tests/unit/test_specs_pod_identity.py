"""Every container running the dbops runner knows its pod's name and namespace from the downward API (the commit
lease's holder, the trigger's scheduled time); a container in the user's image gets nothing of ours."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit import test_specs_command_jobs, test_specs_jobs, test_specs_schedule

from dbops.specs import cronjobs

IDENTITY = {"DBOPS_POD_NAME": "metadata.name", "DBOPS_NAMESPACE": "metadata.namespace"}


def manifests() -> dict[str, dict[str, Any]]:
    cron = cronjobs.build_trigger_cron_job(test_specs_schedule.OWNER, test_specs_schedule.SPEC, image="img:1")
    trigger = {"kind": "Job", "spec": cron["spec"]["jobTemplate"]["spec"]}
    return {**test_specs_jobs.all_jobs(), **{f"migration-{k}": v for k, v in test_specs_command_jobs.all_jobs().items()},
            "trigger": trigger}


@pytest.mark.parametrize("name", sorted(manifests()))
def test_runner_containers_get_the_pod_name_and_namespace_from_the_downward_api(name: str) -> None:
    pod = manifests()[name]["spec"]["template"]["spec"]
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    runners = [c for c in containers if c.get("command") == ["dbops"]]
    assert runners, name
    for container in containers:
        refs = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container.get("env", [])
                if "fieldRef" in e.get("valueFrom", {})}
        if container in runners:
            assert {k: refs.get(k) for k in IDENTITY} == IDENTITY, (name, container["name"])
            assert [e["name"] for e in container["env"]].count("DBOPS_POD_NAME") == 1
        else:
            assert not set(IDENTITY) & set(refs), (name, container["name"])  # the user's image: their env only
