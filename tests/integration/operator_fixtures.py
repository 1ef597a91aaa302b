"""Fixtures shared by the operator tests: PostgreSQL 18, an application database, a running operator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.fixtures.crds import installed_crds  # noqa: F401  (fixture used below)
from tests.integration import operator_harness as harness

from dbops_testbed.controlplane import ControlPlane
from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer, running_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL 18 server for the operator tests."""
    with running_postgres(18) as server:
        yield server


@pytest.fixture
def app_database(postgres: PostgresServer) -> Iterator[str]:
    """A database with two small related tables."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    postgres.psql("CREATE TABLE users (id serial primary key, email text not null);"
                  "INSERT INTO users (email) SELECT 'u' || g || '@x' FROM generate_series(1, 200) g;"
                  "CREATE TABLE bookings (id serial primary key, user_id int references users(id));"
                  "INSERT INTO bookings (user_id) SELECT 1 + g % 200 FROM generate_series(1, 500) g;", name)
    yield name
    postgres.psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    postgres.drop_database(name)


@pytest.fixture
def s3_secret(kube_client: Any, namespace: str, minio_server: MinioServer) -> str:
    """The `s3` credentials Secret in the test namespace."""
    harness.create_secret(kube_client, namespace, "s3", {"AWS_ACCESS_KEY_ID": minio_server.access_key,
                                                         "AWS_SECRET_ACCESS_KEY": minio_server.secret_key})
    return "s3"


@pytest.fixture
def operator(installed_crds: ControlPlane, namespace: str, s3_secret: str  # noqa: F811
             ) -> Iterator[harness.RunningOperator]:
    """An operator watching the test namespace."""
    with harness.running_operator(installed_crds, namespace) as running:
        yield running
