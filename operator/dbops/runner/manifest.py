"""The backup manifest: the commit marker written last, describing every stored object."""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING

import pydantic
from pydantic import alias_generators

from dbops import errors

if TYPE_CHECKING:
    from dbops.runner.storage import Storage

MANIFEST_KEY = "manifest.json"
MANIFEST_VERSION = 1


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel, populate_by_name=True, extra="ignore"
    )


class StoredObject(_Model):
    """One object of the backup, relative to the backup folder."""

    name: str
    size_bytes: int
    sha256: str


class TableRows(_Model):
    """A table in the backup and its exact row count in the dump's snapshot (None: data not dumped)."""

    schema_name: str = pydantic.Field(alias="schema")
    name: str
    rows: int | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``."""
        return f"{self.schema_name}.{self.name}"


class BackupScope(_Model):
    """What the dump included."""

    schema_only: bool = False
    data_only: bool = False
    schemas: list[str] = []
    exclude_schemas: list[str] = []
    tables: list[str] = []
    exclude_tables: list[str] = []
    exclude_table_data: list[str] = []


class DatabaseGrant(_Model):
    """One privilege on the database (``PUBLIC`` or a role)."""

    grantee: str
    privilege: str
    grantable: bool = False


class DatabaseSetting(_Model):
    """``ALTER DATABASE … SET`` (role None) or ``ALTER ROLE … IN DATABASE … SET`` entries, as ``name=value``."""

    role: str | None = None
    config: list[str] = []


class DatabaseProperties(_Model):
    """What ``CREATE DATABASE`` does not bring back: privileges, settings, comment."""

    default_acl: bool = True
    """The database had the default privileges (no GRANT or REVOKE on it)."""
    grants: list[DatabaseGrant] = []
    settings: list[DatabaseSetting] = []
    comment: str | None = None


class BackupManifest(_Model):
    """Everything needed to verify and restore one backup."""

    manifest_version: int = MANIFEST_VERSION
    name: str
    namespace: str
    database: str
    format: str
    codec: str
    compression_level: int
    objects: list[StoredObject]
    server_version: str
    server_version_num: int
    dump_tool_version: str
    database_size_bytes: int
    scope: BackupScope = BackupScope()
    tables: list[TableRows] = []
    database_properties: DatabaseProperties | None = None
    """Database-level privileges, settings and comment (absent in manifests of older versions)."""
    started_at: datetime.datetime
    completed_at: datetime.datetime
    dbops_version: str = ""
    run_id: str = ""
    """Who the backup was made for (the DatabaseBackup's uid when the operator ran it)."""

    def to_json(self) -> bytes:
        """The manifest as indented JSON (camelCase keys)."""
        return self.model_dump_json(by_alias=True, indent=2).encode()

    def rows_by_table(self) -> dict[str, int]:
        """Row counts by ``schema.name`` for the tables whose data was dumped."""
        return {table.qualified_name: table.rows for table in self.tables if table.rows is not None}


def parse_manifest(data: bytes, where: str) -> BackupManifest:
    """Parse a manifest, with a VerificationError when it is not one."""
    try:
        return BackupManifest.model_validate(json.loads(data))
    except (ValueError, pydantic.ValidationError) as error:
        raise errors.VerificationError(f"{where} is not a valid dbops manifest: {str(error)[:300]}") from None


def committed_by_this_run(store: Storage, run_id: str) -> BackupManifest | None:
    """The committed manifest when an earlier run with the same (non-empty) run id wrote it, else None.

    The operator starts a backup Job again when the first one vanished before its result was read (deleted, or
    removed by a ttl); the dump it committed is then the backup, and dumping again would only fail."""
    if not run_id:
        return None
    try:
        manifest = parse_manifest(store.get_bytes(MANIFEST_KEY), store.location.uri(MANIFEST_KEY))
    except errors.VerificationError:
        return None
    return manifest if manifest.run_id == run_id else None
