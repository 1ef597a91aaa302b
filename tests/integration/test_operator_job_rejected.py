"""A Job or CronJob create that the API server refuses ends on the resource as a condition and a Warning Event.

Every manifest-level bad input is refused at admission now, so the refusal comes from the namespace, as it does
in real clusters: a ResourceQuota that allows no (more) Jobs or CronJobs (403 Forbidden, exceeded quota).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from tests.fixtures.cluster import read_json
from tests.integration import operator_harness as harness
from tests.integration.test_operator_errors import DATABASE, SCHEDULE, assert_failed_visibly

from dbops.api.base import GROUP, VERSION
from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

pytestmark = pytest.mark.timeout(600)


def quota(kube_client: Any, namespace: str, hard: dict[str, str]) -> None:
    """A ResourceQuota, waited for until the quota controller has computed it (admission enforces it from then)."""
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "no-jobs"}, "spec": {"hard": hard}})
    harness.eventually(lambda: bool(core.read_namespaced_resource_quota("no-jobs", namespace).status.hard),
                       timeout=120, message="the quota computed")


def test_jobs_and_cron_jobs_refused_by_a_quota_fail_visibly(
        operator: harness.RunningOperator, installed_crds: ControlPlane, kube_client: Any, namespace: str,
        minio_server: MinioServer, bucket: str, postgres: PostgresServer, app_database: str) -> None:
    quota(kube_client, namespace, {"count/jobs.batch": "0", "count/cronjobs.batch": "0"})
    # Everything else is right (a reachable database, an existing bucket): only the quota is in the way.
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    spec = {"database": DATABASE, "storage": harness.s3_storage(minio_server, bucket)}
    harness.create_resource(kube_client, namespace, "DatabaseBackup", "over-quota", spec)
    body = assert_failed_visibly(installed_crds, kube_client, namespace, "DatabaseBackup", "over-quota",
                                 "JobRejected", "Job", "quota")
    assert "no-jobs" in {c["type"]: c for c in body["status"]["conditions"]}["Failed"]["message"]
    harness.create_resource(kube_client, namespace, SCHEDULE, "nightly",
                            {"schedule": "0 2 * * *", "backupTemplate": {"spec": spec}})
    assert_failed_visibly(installed_crds, kube_client, namespace, SCHEDULE, "nightly", "CronJobRejected", "CronJob",
                          "quota", "no-jobs")
    assert harness.list_jobs(kube_client, namespace) == []
    # the quota lifted and the spec changed (a new generation): the schedule tries again and becomes Active
    client.CoreV1Api(kube_client).delete_namespaced_resource_quota("no-jobs", namespace)
    client.CustomObjectsApi(kube_client).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "databasebackupschedules", "nightly", {"spec": {"schedule": "0 3 * * *"}},
        _preload_content=False)
    body = harness.wait_for_phase(kube_client, namespace, SCHEDULE, "nightly", {"Active"}, timeout=120)
    assert "Failed" not in {c["type"] for c in body["status"]["conditions"]}, body["status"]
    assert read_json(client.BatchV1Api(kube_client).read_namespaced_cron_job(
        body["status"]["cronJobName"], namespace, _preload_content=False))["spec"]["schedule"] == "0 3 * * *"
    assert operator.alive() and "Traceback" not in operator.logs()
