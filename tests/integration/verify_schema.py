"""A MentorHub-like schema for the post-migration verification tests: foreign keys in both directions
(teams ↔ users), a range-partitioned bookings table referencing users, identity sequences, indexes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.roles import JobRole
from dbops.specs import jobs as job_specs

SCHEMA = """
CREATE TABLE teams (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, owner_id bigint);
CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE,
                    team_id bigint REFERENCES teams (id), active boolean NOT NULL DEFAULT true);
ALTER TABLE teams ADD CONSTRAINT teams_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id) DEFERRABLE;
CREATE TABLE bookings (id bigint GENERATED ALWAYS AS IDENTITY, user_id bigint NOT NULL REFERENCES users (id),
                       starts_at timestamptz NOT NULL, status text NOT NULL DEFAULT 'pending',
                       PRIMARY KEY (id, starts_at)) PARTITION BY RANGE (starts_at);
CREATE TABLE bookings_2025 PARTITION OF bookings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE bookings_2026 PARTITION OF bookings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX bookings_user_idx ON bookings (user_id);
CREATE INDEX bookings_status_idx ON bookings (status);
CREATE INDEX users_team_idx ON users (team_id);
INSERT INTO teams (name) SELECT 'team ' || g FROM generate_series(1, 20) g;
INSERT INTO users (email, team_id) SELECT 'u' || g || '@example.org', 1 + g % 20 FROM generate_series(1, 2000) g;
UPDATE teams SET owner_id = id * 10;
INSERT INTO bookings (user_id, starts_at, status)
SELECT 1 + g % 2000, timestamptz '2025-03-01' + g * interval '40 minutes',
       CASE WHEN g % 10 = 0 THEN 'cancelled' ELSE 'confirmed' END
FROM generate_series(1, 20000) g;
ANALYZE;
"""

DELETE_CANCELLED = "DELETE FROM bookings WHERE status = 'cancelled';\n"
"""A correct data migration that deletes 10% of the bookings."""


def operator_args(spec: dict[str, Any], source: Path) -> list[str]:
    """The apply Job's arguments the operator builds for this spec, pointed at a local file set."""
    parsed = DatabaseMigrationSpec.model_validate(spec)
    args = job_specs.migration_args(parsed, JobRole.APPLY)
    return [str(source) if arg == job_specs.MIGRATIONS_PATH else arg for arg in args]
