"""Command-mode Job builders: golden manifests, the user's image and env, our connection env from Secrets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.unit.golden import assert_matches_golden

from dbops.api.migration import DatabaseMigrationSpec
from dbops.specs import command_jobs
from dbops.specs import jobs as job_specs
from dbops.specs.owner import Owner

OWNER = Owner("DatabaseMigration", "prod", "mentorhub-schema", "m-uid", 3)
IMAGE = "ghcr.io/dbops/dbops:0.1.0"
APP_IMAGE = "registry.example/mentorhub:1.4"
DJANGO = {
    "database": {"uriSecretRef": {"name": "db", "key": "uri"}, "sslMode": "require"},
    "source": {"command": {
        "image": APP_IMAGE, "command": ["python", "manage.py", "migrate", "--noinput"],
        "env": [{"name": "DJANGO_SETTINGS_MODULE", "value": "mentorhub.settings"},
                {"name": "SECRET_KEY", "valueFrom": {"secretKeyRef": {"name": "app", "key": "secret-key"}}},
                {"name": "PGSSLMODE", "value": "disable"}],
    }},
    "verify": {"builtin": ["foreignKeys", "invalidIndexes"],
               "checks": [{"name": "no-orphan-bookings", "sql": "select 1", "expect": {"rows": 0}}]},
    "jobTemplate": {"image": "mirror.example/dbops:0.1.0", "backoffLimit": 2, "activeDeadlineSeconds": 1800,
                    "nodeSelector": {"pool": "batch"}},
}


def spec(**changes: Any) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({**DJANGO, **changes})


def all_jobs() -> dict[str, dict[str, Any]]:
    plain = spec(verify={}, jobTemplate=None, database={"host": "pg", "name": "app", "user": "app",
                                                        "passwordSecretRef": {"name": "db", "key": "password"}})
    return {
        "command": command_jobs.build_command_job(OWNER, spec(), revision="abc123", image=IMAGE),
        "command-host-password": command_jobs.build_command_job(OWNER, plain, revision="abc123", image=IMAGE),
        "verify-db": command_jobs.build_verify_db_job(OWNER, spec(), source_config_map="schema-src",
                                                      revision="abc123", image=IMAGE),
        "verify-db-builtins-only": command_jobs.build_verify_db_job(OWNER, plain, source_config_map="schema-src",
                                                                    revision="abc123", image=IMAGE),
    }


@pytest.mark.parametrize("name", sorted(all_jobs()))
def test_job_matches_golden(name: str) -> None:
    assert_matches_golden(f"job-migration-{name}", all_jobs()[name])


@pytest.mark.parametrize("name", sorted(all_jobs()))
def test_jobs_are_restricted_owned_and_carry_no_secret_values(name: str) -> None:
    job = all_jobs()[name]
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "m-uid"
    for env in container["env"]:
        if env["name"] in {"PGPASSWORD", "DBOPS_DATABASE_URI", "DATABASE_URL", "SECRET_KEY"}:
            assert "value" not in env and "secretKeyRef" in env["valueFrom"]
    assert "password" not in json.dumps(container.get("args", [])).lower()


def test_the_command_runs_in_the_users_image_with_their_command() -> None:
    job = all_jobs()["command"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == APP_IMAGE  # jobTemplate.image replaces only our runner image
    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"] and "args" not in container
    assert job["metadata"]["labels"]["dbops.io/role"] == "command"
    assert job["metadata"]["name"] == job_specs.job_name(OWNER, "command", "abc123")
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 1800
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["onExitCodes"] == {"containerName": "runner", "operator": "NotIn", "values": [0]}


def test_command_env_has_the_users_env_our_connection_and_database_url() -> None:
    env = {item["name"]: item for item in all_jobs()["command"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DJANGO_SETTINGS_MODULE"]["value"] == "mentorhub.settings"
    assert env["SECRET_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "app", "key": "secret-key"}}
    uri_ref = {"secretKeyRef": {"name": "db", "key": "uri"}}
    assert env["DBOPS_DATABASE_URI"]["valueFrom"] == uri_ref and env["DATABASE_URL"]["valueFrom"] == uri_ref
    assert env["PGSSLMODE"]["value"] == "require"  # the connection settings win over a user variable
    names = [item["name"] for item in all_jobs()["command"]["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert len(names) == len(set(names))


def test_a_users_database_url_is_kept_and_no_uri_means_no_database_url() -> None:
    own = spec(source={"command": {"image": APP_IMAGE, "command": ["migrate"],
                                   "env": [{"name": "DATABASE_URL", "value": "postgres://app@pgbouncer/app"}]}})
    env = command_jobs.command_env(own)
    assert [item for item in env if item["name"] == "DATABASE_URL"] == [
        {"name": "DATABASE_URL", "value": "postgres://app@pgbouncer/app"}]
    host = spec(database={"host": "pg", "name": "app", "passwordSecretRef": {"name": "db", "key": "password"}})
    assert "DATABASE_URL" not in {item["name"] for item in command_jobs.command_env(host)}


def test_verify_db_runs_our_image_with_builtins_and_the_checks_file() -> None:
    job = all_jobs()["verify-db"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "mirror.example/dbops:0.1.0" and container["command"] == ["dbops"]
    assert container["args"] == ["verify-db", "--builtin", "foreignKeys,invalidIndexes", "--history-table",
                                 "public.dbops_migrations", "--snapshot-run", "abc123",
                                 "--checks-file", "/dbops-checks/checks.json"]
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "checks", "configMap": {"name": "schema-src", "items": [{"key": "checks.json",
                                                                            "path": "checks.json"}]}} in volumes
    assert job["metadata"]["labels"]["dbops.io/role"] == "verify"
    none = command_jobs.verify_db_args(spec(verify={"builtin": []}), checks_file=False)
    assert none == ["verify-db", "--builtin", "none", "--history-table", "public.dbops_migrations"]


def test_the_command_builder_refuses_a_sql_source() -> None:
    with pytest.raises(ValueError, match=r"source\.command"):
        command_jobs.build_command_job(OWNER, spec(source={"inline": [{"version": "1", "name": "a", "up": "x"}]}),
                                       revision="r")
