"""The specs of the children a DatabaseMigration creates: the pre-migration backup and the rollback restore."""

from __future__ import annotations

from typing import Any

from dbops.api.migration import DatabaseMigrationSpec


def pre_backup_spec(spec: DatabaseMigrationSpec) -> dict[str, Any]:
    """The DatabaseBackup spec of the pre-migration backup."""
    assert spec.backup.storage is not None
    return {"database": spec.database.to_wire(), "storage": spec.backup.storage.to_wire(), "deletionPolicy": "Retain",
            "verify": {"decode": True}}


def rollback_restore_spec(spec: DatabaseMigrationSpec, backup_name: str, database_name: str) -> dict[str, Any]:
    """The DatabaseRestore spec that puts the pre-migration backup back."""
    return {
        "source": {"backupRef": {"name": backup_name}},
        "target": {"database": spec.database.to_wire()},
        "recreate": True, "confirmOverwrite": database_name, "terminateConnections": True,
    }
