"""What the DatabaseMigration rehearsal operator tests share: the enriched target, its migrations, both PG majors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration import operator_harness as harness

from dbops_testbed.postgres import PostgresServer, running_postgres

MIGRATION = "DatabaseMigration"
# Foreign keys both ways (bookings → users from the fixture, users → their last booking), a partitioned table,
# sequences, and enough bookings that a rewrite is a real copy.
ENRICH = """
INSERT INTO bookings (user_id) SELECT 1 + g % 200 FROM generate_series(1, 60000) g;
ALTER TABLE users ADD COLUMN last_booking_id int REFERENCES bookings (id);
UPDATE users u SET last_booking_id = (SELECT max(id) FROM bookings b WHERE b.user_id = u.id);
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, happened_on date NOT NULL, user_id int REFERENCES users (id))
    PARTITION BY RANGE (happened_on);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO events (happened_on, user_id) SELECT DATE '2026-01-01' + g % 300, 1 + g % 200 FROM generate_series(1, 3000) g;
"""
MIGRATIONS = [
    {"version": "0001", "name": "bookings_note", "up": "ALTER TABLE bookings ADD COLUMN note text;"},
    {"version": "0002", "name": "bookings_user_bigint", "up": "ALTER TABLE bookings ALTER COLUMN user_id TYPE bigint;"},
    {"version": "0003", "name": "users_email_lower", "up": "UPDATE users SET email = lower(email) WHERE id % 2 = 0;"},
]


@pytest.fixture(scope="module", params=(15, 18), ids=lambda major: f"pg{major}")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """The rehearsal end to end on both supported majors (the shared operator fixture runs PostgreSQL 18 only)."""
    with running_postgres(request.param) as server:
        yield server


def spec(s3: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A SQL migration of MIGRATIONS on the "db" Secret's database, lint and pre-checks off."""
    return {"database": {"uriSecretRef": {"name": "db", "key": "uri"}}, "source": {"inline": MIGRATIONS},
            "baselineVersion": "0000", "lint": {"enabled": False}, "preChecks": {"enabled": False}, **extra}


def scratch_databases(postgres: PostgresServer) -> list[str]:
    """The rehearsal's scratch databases left on a server."""
    return postgres.psql("SELECT datname FROM pg_database WHERE datname LIKE 'dbops\\_rehearsal\\_%'").split()


@pytest.fixture
def target(kube_client: Any, namespace: str, postgres: PostgresServer, app_database: str) -> str:
    """The application database, enriched, behind the "db" Secret."""
    postgres.psql(ENRICH, app_database)
    harness.create_secret(kube_client, namespace, "db", {"uri": postgres.uri(app_database)})
    return app_database

