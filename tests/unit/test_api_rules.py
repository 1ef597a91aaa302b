"""Every CEL rule of the CRDs has its pydantic twin: one Rule owns both, or a type checks both (named here)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dbops.api import base
from dbops.api.backup import DatabaseBackupSpec
from dbops.api.crd import custom_resource_definition
from dbops.api.kinds import ALL_KINDS
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.restore import DatabaseRestoreSpec

# CEL rules on types whose AfterValidator or model validator is the twin (api/cron.py, kubevalues.py, common.py,
# migration_source.py); every other rule must be a Rule.
TYPE_TWINS = {
    "cron ranges must run from low to high, e.g. 1-5 or MON-FRI",
    "the schedule never fires: no listed day of month exists in any listed month (e.g. Feb 30)",
    "must be at most 24d20h31m23s (PostgreSQL's limit for lock_timeout and statement_timeout)",
    "label keys must be qualified names, e.g. team or example.com/team",
    "label values must be at most 63 letters, digits, '-', '_' or '.', starting and ending with one",
    "annotation keys must be qualified names, e.g. note or example.com/note",
    "resources are cpu, memory, ephemeral-storage",
    "must be non-negative quantities such as 100m, 0.5, 256Mi or 1G",
    "must be an IANA time zone name such as UTC or Europe/Berlin (case matters)",
    "must be a non-negative quantity of bytes such as 512Mi or 2G",
    "query names must be unique",
    "smoke test names must be unique",
    "a request must not exceed its limit",
    "key must be a qualified name, e.g. dedicated or example.com/pool",
    "operator must be Exists when key is empty",
    "value must be empty when operator is Exists",
    "value must be a label value (at most 63 letters, digits, '-', '_' or '.')",
    "tolerationSeconds needs effect: NoExecute",
    "up has no SQL statement (only comments or ';')",
    "set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef",
    "set value or valueFrom, not both",
    "a credential (a name with PASSWORD, SECRET, TOKEN or KEY, or a URL with a password) must not be a literal "
    "value: use valueFrom.secretKeyRef",
    "inline migration versions must be unique (compared as numbers: 0001 and 1 are the same)",
}


def _models(cls: type[base.ApiModel]) -> list[type[base.ApiModel]]:
    return [cls, *(m for sub in cls.__subclasses__() for m in _models(sub))]


def _crd_rules() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(rule["message"] for rule in node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for kind in ALL_KINDS:
        walk(custom_resource_definition(kind))
    return found


def test_every_cel_rule_has_a_python_twin() -> None:
    owned = {rule.message for model in _models(base.ApiModel) for rule in model.rules}
    assert len(owned) >= 24
    assert _crd_rules() - owned - TYPE_TWINS == set()
    assert _crd_rules() >= TYPE_TWINS, "a type twin listed here is no longer a CEL rule"


DB: dict[str, Any] = {"host": "pg", "name": "app"}
S3: dict[str, Any] = {"s3": {"bucket": "bkt"}}
BACKUP: dict[str, Any] = {"database": DB, "storage": S3}
MIGRATION: dict[str, Any] = {"database": DB, "source": {"configMapRef": {"name": "m"}}}
RESTORE: dict[str, Any] = {"source": {"backupRef": {"name": "b"}}, "target": {"database": DB}}
CHECK: dict[str, Any] = {"name": "c", "sql": "SELECT 1", "expect": {"rows": 0}}
INLINE_1: dict[str, Any] = {"version": "1", "name": "a", "up": "SELECT 1"}

# One spec breaking each Rule (each was admitted by pydantic and refused by the API server alone before).
BROKEN: list[tuple[type[Any], dict[str, Any], str]] = [
    (DatabaseBackupSpec, {**BACKUP, "compression": {"codec": "zstd", "level": 19}}, ""),  # the valid edge
    (DatabaseBackupSpec, {**BACKUP, "compression": {"codec": "gzip", "level": 10}}, "gzip levels are 1 to 9"),
    (DatabaseBackupSpec, {**BACKUP, "scope": {"schemaOnly": True, "dataOnly": True}}, "exclude each other"),
    (DatabaseBackupSpec, {**BACKUP, "parallelJobs": 2}, "parallelJobs > 1 needs format: directory"),
    (DatabaseBackupSpec, {**BACKUP, "format": "plain", "verify": {"restoreTest": True}}, "restoreTest needs format"),
    (DatabaseBackupSpec, {**BACKUP, "verify": {"checks": [CHECK]}}, "verify.checks need verify.restoreTest"),
    (DatabaseBackupSpec, {**BACKUP, "database": {"host": "pg"}}, "set either uriSecretRef or both host and name"),
    (DatabaseBackupSpec, {**BACKUP, "database": {**DB, "user": "u", "userSecretRef": {"name": "s", "key": "u"}}},
     "set at most one of user and userSecretRef"),
    (DatabaseBackupSpec, {**BACKUP, "storage": {**S3, "pvc": {"claimName": "c"}}}, "set exactly one storage backend"),
    (DatabaseBackupSpec, {**BACKUP, "storage": {}}, "set exactly one storage backend"),
    (DatabaseBackupSpec, {**BACKUP, "storage": {**S3, "pvc": None}}, ""),  # a null is absent, as CEL's has() says
    (DatabaseBackupSpec, {**BACKUP, "verify": {"restoreTest": True, "checks": [{**CHECK, "expect": {}}]}},
     "set at least one of rows, min, max, equals"),
    (DatabaseMigrationSpec, {**MIGRATION, "approval": {"approvedPlanHash": "0123456789ab"}},
     "approvedPlanHash is only used with mode: Manual"),
    (DatabaseMigrationSpec, {**MIGRATION, "backup": {"enabled": True}}, "an enabled backup needs storage or scheduleRef"),
    (DatabaseMigrationSpec, {**MIGRATION, "onFailure": "RestoreBackup"}, "onFailure: RestoreBackup needs backup"),
    (DatabaseMigrationSpec, {**MIGRATION, "targetVersion": "2",
                             "source": {"command": {"image": "app:1", "command": ["migrate"]}}},
     "targetVersion is not supported with a command source"),
    (DatabaseMigrationSpec, {**MIGRATION, "rehearsal": {"enabled": True},
                             "source": {"command": {"image": "app:1", "command": ["migrate"]}}},
     "rehearsal is not supported with a command source"),
    (DatabaseMigrationSpec, {**MIGRATION, "importHistory": {"from": "golang-migrate"},
                             "source": {"command": {"image": "app:1", "command": ["migrate"]}}},
     "importHistory is not supported with a command source"),
    (DatabaseMigrationSpec, {**MIGRATION, "importHistory": {"from": "flyway", "table": "app.flyway_history"}}, ""),
    (DatabaseMigrationSpec, {**MIGRATION, "verify": {"rowCounts": {"exactCountMaxSize": "1GBB"}}},
     "not a non-negative quantity"),
    (DatabaseMigrationSpec, {**MIGRATION, "verify": {"orphanScanMaxSize": "-1Mi"}}, "not a non-negative quantity"),
    (DatabaseMigrationSpec, {**MIGRATION, "verify": {"orphanScanMaxSize": "0",
                                                     "rowCounts": {"exactCountMaxSize": "1.5Gi"}}}, ""),
    (DatabaseMigrationSpec, {**MIGRATION, "source": {"configMapRef": {"name": "m"},
                                                     "command": {"image": "app:1", "command": ["migrate"]}}},
     "set exactly one migration source"),
    (DatabaseMigrationSpec, {**MIGRATION, "source": {"inline": [INLINE_1, {**INLINE_1, "version": "3"}]}},
     "consecutive: 1 is followed by 3"),
    (DatabaseMigrationSpec, {**MIGRATION, "allowGaps": True,
                             "source": {"inline": [INLINE_1, {**INLINE_1, "version": "3"}]}}, ""),
    (DatabaseMigrationSpec, {**MIGRATION, "source": {"inline": [INLINE_1, {**INLINE_1, "version": "1.2"}]}},
     ""),  # a gap between dotted versions: decided by the operator (InvalidSpec), as CEL cannot compare them
    (DatabaseRestoreSpec, {**RESTORE, "source": {"backupRef": {"name": "b"}, "storage": S3, "path": "p"}},
     "set exactly one of backupRef or storage"),
    (DatabaseRestoreSpec, {**RESTORE, "source": {"storage": S3}}, "storage needs path"),
    (DatabaseRestoreSpec, {**RESTORE, "safetyBackup": {"enabled": True}}, "an enabled safety backup needs storage"),
    (DatabaseRestoreSpec, {**RESTORE, "mode": "Tables", "strategy": "Merge"}, "tables must be listed"),
    (DatabaseRestoreSpec, {**RESTORE, "tables": ["t"]}, "tables must be listed"),
    (DatabaseRestoreSpec, {**RESTORE, "clean": True}, "clean or recreate overwrites the target"),
    (DatabaseRestoreSpec, {**RESTORE, "mode": "Tables", "tables": ["t"]}, "a Tables restore with strategy Replace"),
    (DatabaseRestoreSpec, {**RESTORE, "strategy": "Merge"}, "strategy is only used with mode: Tables"),
    (DatabaseRestoreSpec, {**RESTORE, "onConflict": "Overwrite"}, "onConflict: Overwrite is only used with"),
    (DatabaseRestoreSpec, {**RESTORE, "confirmOverwrite": "yes"}, "confirmOverwrite 'yes' must equal"),
    (DatabaseRestoreSpec, {**RESTORE, "recreate": True, "confirmOverwrite": "app", "mode": "DataOnly"},
     "recreate is only used with mode: Full"),
    (DatabaseRestoreSpec, {**RESTORE, "mode": "Tables", "tables": ["t"], "strategy": "MissingOnly",
                           "parallelJobs": 2}, "parallelJobs > 1 is not used with mode: Tables"),
]


@pytest.mark.parametrize(("model", "spec", "message"), BROKEN, ids=[f"{i}-{m or 'valid'}"[:48]
                                                                    for i, (_, _, m) in enumerate(BROKEN)])
def test_pydantic_refuses_what_the_cel_rule_refuses(model: type[Any], spec: dict[str, Any], message: str) -> None:
    if not message:
        model.model_validate(spec)
        return
    with pytest.raises(ValidationError, match=message):
        model.model_validate(spec)
