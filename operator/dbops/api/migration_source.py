"""Where a DatabaseMigration's migrations come from: inline SQL, a ConfigMap, or a framework command."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from dbops.api import kubevalues, versions
from dbops.api.base import ApiModel, Rule
from dbops.api.common import LocalObjectReference, ResourceName, SecretKey
from dbops.api.migration_command_plan import PlanMode

# A version CEL can compare with int(): digits only, at most 18 of them after leading zeros. Lists with another
# version (1.2, 1_2, a longer timestamp) are checked by the operator before any Job (InvalidSpec naming them).
PLAIN_VERSION = r"^0*[0-9]{1,18}$"
PLAIN_CEL = f"m.version.matches('{PLAIN_VERSION}')"

# SQL with nothing but whitespace, ';', -- comments and (non-nested) /* */ comments: the runner finds no statement.
NO_STATEMENT = r"^([\t\n\f\r ;]|--[^\n]*|/\*([^*]|\*+[^*/])*\*+/)*$"


class InlineMigration(ApiModel):
    """One migration given in the resource."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [{
                "rule": f"!self.up.matches('{NO_STATEMENT.replace(chr(92), chr(92) * 2)}')",
                "message": "up has no SQL statement (only comments or ';')", "fieldPath": ".up",
            }]
        }
    }

    version: Annotated[str, StringConstraints(pattern=rf"^{versions.PATTERN}$", max_length=versions.MAX_LENGTH)]
    """Version: digits, or digit runs joined by '.' or '_' (0001, 1.2), as in file names; applied in order,
    compared part by part; consecutive (1, 2, 3 or 1, 1.1, 2) unless spec.allowGaps."""
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]*$", max_length=128)]
    """Short snake_case name, starting with a letter or digit."""
    up: Annotated[str, StringConstraints(min_length=1, max_length=32768)]
    """SQL that applies the migration."""
    down: Annotated[str, StringConstraints(max_length=32768)] | None = None
    """SQL that reverts it."""

    @model_validator(mode="after")
    def _has_a_statement(self) -> InlineMigration:
        if re.fullmatch(NO_STATEMENT, self.up):
            raise ValueError(f"migration {self.version}: up has no SQL statement (only comments or ';')")
        return self


FIELD_PATHS = (
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['[^']+'\]|"
    r"spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)


class KeyReference(ApiModel):
    """A key of a Secret or ConfigMap in the resource's namespace."""

    name: ResourceName
    """Name of the Secret or ConfigMap."""
    key: SecretKey
    """Key inside it."""
    optional: bool | None = None
    """Whether the container starts when the key is missing."""


class FieldReference(ApiModel):
    """A field of the pod (the downward API)."""

    field_path: Annotated[str, StringConstraints(pattern=FIELD_PATHS, max_length=256)]
    """e.g. metadata.name, metadata.labels['team'], status.podIP."""
    api_version: Literal["v1"] | None = None
    """Version of the field path."""


class ResourceFieldReference(ApiModel):
    """A resource of a container (the downward API)."""

    resource: Literal["limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu",
                      "requests.memory", "requests.ephemeral-storage"]
    """The container resource whose value the variable gets."""
    container_name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                                                     max_length=63)] | None = None
    """The container (default: this one)."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from: exactly one source."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [{
                "rule": "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef), "
                        "has(self.resourceFieldRef)].filter(x, x).size() == 1",
                "message": "set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef",
            }]
        }
    }

    secret_key_ref: KeyReference | None = None
    """A Secret key."""
    config_map_key_ref: KeyReference | None = None
    """A ConfigMap key."""
    field_ref: FieldReference | None = None
    """A pod field."""
    resource_field_ref: ResourceFieldReference | None = None
    """A container resource."""

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        sources = [self.secret_key_ref, self.config_map_key_ref, self.field_ref, self.resource_field_ref]
        if sum(source is not None for source in sources) != 1:
            raise ValueError("set exactly one of secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef")
        return self


class EnvVar(ApiModel):
    """An environment variable for command mode (values or Secret/ConfigMap references)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                 "message": "set value or valueFrom, not both", "fieldPath": ".valueFrom"},
                {"rule": kubevalues.CREDENTIAL_LITERAL_CEL,
                 "message": "a credential (a name with PASSWORD, SECRET, TOKEN or KEY, or a URL with a password) "
                            "must not be a literal value: use valueFrom.secretKeyRef", "fieldPath": ".value"},
            ]
        }
    }

    name: Annotated[str, StringConstraints(pattern=kubevalues.ENV_NAME_PATTERN, max_length=253)]
    """The environment variable's name."""
    value: Annotated[str, StringConstraints(max_length=4096)] | None = None
    """Literal value (never a credential: use valueFrom)."""
    value_from: EnvVarSource | None = None
    """A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef or resourceFieldRef)."""

    @model_validator(mode="after")
    def _no_literal_credentials(self) -> EnvVar:
        if self.value and self.value_from is not None:
            raise ValueError(f"env {self.name}: set value or valueFrom, not both")
        if kubevalues.credential_literal(self.name, self.value):
            raise ValueError(f"env {self.name}: a credential must not be a literal value: use valueFrom.secretKeyRef")
        return self


Argv = Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=64)]


class CommandSource(ApiModel):
    """A framework's own migration command (Django, Alembic, Flyway…) wrapped with checks."""

    rules = (Rule("self.plan != 'Disabled' || !has(self.planCommand) || size(self.planCommand) == 0",
                  "planCommand is not used with plan: Disabled",
                  lambda m: m.plan != "Disabled" or not m.plan_command, ".planCommand"),)

    image: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    """The application image that holds the framework."""
    command: Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(min_length=1, max_length=64)]
    """Command and arguments, e.g. [python, manage.py, migrate] or [alembic, upgrade, head]."""
    env: Annotated[list[EnvVar], Field(max_length=128)] = Field(default_factory=list)
    """Environment of the command (credentials only through valueFrom.secretKeyRef); the database
    connection is added (DBOPS_DATABASE_URI, PG*, and DATABASE_URL unless set here)."""
    plan: PlanMode = "Auto"
    """Run the framework's plan first (same image and env), show it in status.plan, and with manual approval
    approve it: Auto when a plan command is known (planCommand, or the default for Django's ``manage.py migrate``:
    the command with ``--plan``, and Alembic's ``alembic upgrade <target>``: ``alembic history --indicate-current
    -r current:<target>``); Required fails the migration when none is known; Disabled runs no plan (approval then
    covers the spec only)."""
    plan_command: Argv = Field(default_factory=list)
    """The command that prints what ``command`` will do without doing it (same image and env); its output must be
    the same on every run while the database does not change. Empty: the framework's default (see plan)."""


class MigrationSource(ApiModel):
    """Where migrations come from: exactly one of configMapRef, inline, command."""

    rules = (Rule("[has(self.configMapRef), has(self.inline), has(self.command)].filter(x, x).size() == 1",
                  "set exactly one migration source: configMapRef, inline or command",
                  lambda m: [m.config_map_ref, m.inline, m.command].count(None) == 2),)

    config_map_ref: LocalObjectReference | None = None
    """A ConfigMap of NNNN_name.up.sql / NNNN_name.down.sql files."""
    inline: Annotated[list[InlineMigration], Field(min_length=1, max_length=50, json_schema_extra={
        "x-kubernetes-validations": [{
            # Versions compare as numbers (0001 is 1), as the runner compares them.
            "rule": f"!self.all(m, {PLAIN_CEL}) || self.all(m, self.exists_one(n, int(n.version) == int(m.version)))",
            "message": "inline migration versions must be unique (compared as numbers: 0001 and 1 are the same)",
        }]})] | None = None
    """Migrations listed in the resource (at most 50 of 32 KiB: an object must fit etcd; use configMapRef for more)."""
    command: CommandSource | None = None
    """A framework command."""

    @field_validator("inline")
    @classmethod
    def _unique_versions(cls, inline: list[InlineMigration] | None) -> list[InlineMigration] | None:
        if not plain(inline):
            return inline
        seen: dict[int, str] = {}
        for migration in inline or []:
            number = int(migration.version)  # as the runner compares them: 0001 is 1
            if number in seen:
                same = "" if seen[number] == migration.version else f" (the same number as {seen[number]})"
                raise ValueError(f"duplicate migration version: {migration.version}{same}")
            seen[number] = migration.version
        return inline


def plain(inline: list[InlineMigration] | None) -> bool:
    """True when every version is one CEL compares as a number (``PLAIN_VERSION``)."""
    return all(re.fullmatch(PLAIN_VERSION, migration.version) for migration in inline or [])


def gap(inline: list[InlineMigration] | None) -> tuple[str, str] | None:
    """The first two plain versions with a gap between them (the CEL rule's Python twin), else None."""
    if not inline or not plain(inline):
        return None
    seen = {int(migration.version): migration.version for migration in reversed(inline)}
    numbers = sorted(seen)
    return next(((seen[a], seen[b]) for a, b in itertools.pairwise(numbers) if b != a + 1), None)
