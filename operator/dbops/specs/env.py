"""Container environment for the runner: connection and S3 credentials, only as secretKeyRef."""

from __future__ import annotations

from typing import Any

from dbops.api.common import DatabaseConnection, SecretKeySelector, Storage

EnvVar = dict[str, Any]


def secret_env(name: str, selector: SecretKeySelector) -> EnvVar:
    """An env var taken from a key of a Secret."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": selector.name, "key": selector.key}}}


POD_NAME_ENV = "DBOPS_POD_NAME"
NAMESPACE_ENV = "DBOPS_NAMESPACE"


def pod_identity_env() -> list[EnvVar]:
    """The pod's name and namespace from the downward API: the runner names itself with them (the commit lease's
    holder, the trigger's scheduled time) instead of $HOSTNAME, which a pod's ``hostname`` replaces."""
    return [{"name": NAMESPACE_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]


def value_env(name: str, value: str | int) -> EnvVar:
    """An env var with a literal (never secret) value."""
    return {"name": name, "value": str(value)}


def database_env(database: DatabaseConnection) -> list[EnvVar]:
    """DBOPS_DATABASE_URI and PG* variables describing a connection; credentials only from Secrets."""
    env: list[EnvVar] = []
    if database.uri_secret_ref is not None:
        env.append(secret_env("DBOPS_DATABASE_URI", database.uri_secret_ref))
    if database.host is not None:
        env.append(value_env("PGHOST", database.host))
    if database.port is not None:
        env.append(value_env("PGPORT", database.port))
    if database.name is not None:
        env.append(value_env("PGDATABASE", database.name))
    if database.user is not None:
        env.append(value_env("PGUSER", database.user))
    if database.user_secret_ref is not None:
        env.append(secret_env("PGUSER", database.user_secret_ref))
    if database.password_secret_ref is not None:
        env.append(secret_env("PGPASSWORD", database.password_secret_ref))
    if database.ssl_mode is not None:
        env.append(value_env("PGSSLMODE", database.ssl_mode))
    return env


def storage_env(storage: Storage) -> list[EnvVar]:
    """AWS credentials from the storage's credentials Secret (none for PVCs or workload identity)."""
    if storage.s3 is None or storage.s3.credentials_secret_ref is None:
        return []
    secret = storage.s3.credentials_secret_ref.name
    return [
        secret_env(key, SecretKeySelector(name=secret, key=key))
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]


def secret_references(database: DatabaseConnection | None, *storages: Storage | None) -> list[SecretKeySelector]:
    """Every Secret key a Job will read, so the operator can check they exist before creating it."""
    selectors: list[SecretKeySelector] = []
    if database is not None:
        selectors += [
            ref for ref in (database.uri_secret_ref, database.user_secret_ref, database.password_secret_ref)
            if ref is not None
        ]
    for storage in storages:
        if storage is not None and storage.s3 is not None and storage.s3.credentials_secret_ref is not None:
            name = storage.s3.credentials_secret_ref.name
            selectors += [SecretKeySelector(name=name, key=key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return selectors
