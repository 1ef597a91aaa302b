"""CronJob and trigger RBAC builders for schedules."""

from __future__ import annotations

from tests.unit.golden import assert_matches_golden

from dbops.api.schedule import DatabaseBackupScheduleSpec
from dbops.specs import cronjobs, operator_rbac, rbac
from dbops.specs.owner import Owner

OWNER = Owner("DatabaseBackupSchedule", "prod", "mentorhub-nightly", "s-uid", 1)
SPEC = DatabaseBackupScheduleSpec.model_validate({
    "schedule": "0 2 * * *", "timeZone": "Europe/Berlin", "concurrencyPolicy": "Forbid",
    "successfulJobsHistoryLimit": 1,
    "backupTemplate": {"spec": {
        "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "storage": {"s3": {"bucket": "backups"}},
    }},
    "retention": {"keepLast": 7},
})


def test_cron_job_matches_golden() -> None:
    assert_matches_golden("cronjob-trigger", cronjobs.build_trigger_cron_job(OWNER, SPEC, image="img:1"))


def test_trigger_rbac_matches_golden() -> None:
    assert_matches_golden("rbac-trigger", [
        rbac.build_trigger_service_account(OWNER), rbac.build_trigger_role(OWNER),
        rbac.build_trigger_role_binding(OWNER),
    ])


def test_cron_job_mirrors_schedule_fields_and_runs_as_trigger_account() -> None:
    cron = cronjobs.build_trigger_cron_job(OWNER, SPEC.model_copy(update={"suspend": True}), image="img:1")
    assert cron["spec"]["suspend"] is True
    assert cron["spec"]["timeZone"] == "Europe/Berlin"
    assert cron["spec"]["startingDeadlineSeconds"] == 3600
    assert len(cron["metadata"]["name"]) <= 52
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == rbac.trigger_account_name(OWNER)
    assert pod["automountServiceAccountToken"] is True
    assert pod["containers"][0]["args"] == ["trigger", "backup", "--schedule", "mentorhub-nightly"]


def test_with_the_installed_trigger_cluster_role_no_role_is_written() -> None:
    manifests = rbac.trigger_manifests(OWNER, "dbops-trigger")
    assert [m["kind"] for m in manifests] == ["ServiceAccount", "RoleBinding"]
    assert manifests[1]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                       "name": "dbops-trigger"}
    assert [m["kind"] for m in rbac.trigger_manifests(OWNER)] == ["ServiceAccount", "Role", "RoleBinding"]


def test_trigger_cluster_role_grants_what_the_per_schedule_role_does() -> None:
    role = rbac.build_trigger_role(OWNER)
    strip = [{key: value for key, value in rule.items() if key != "resourceNames"} for rule in role["rules"]]
    assert strip == operator_rbac.policy_rules(operator_rbac.TRIGGER_RULES)


def test_trigger_role_is_namespaced_and_minimal() -> None:
    role = rbac.build_trigger_role(OWNER)
    assert role["kind"] == "Role"
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs == {"get", "create"}
