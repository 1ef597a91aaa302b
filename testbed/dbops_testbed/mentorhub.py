"""A plausible MentorHub database and manifests/examples pointed at the test bed's PostgreSQL and MinIO."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from dbops_testbed.minio import MinioServer
from dbops_testbed.postgres import PostgresServer

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
EXAMPLE_FILES = ("secrets.yaml", "databasebackup.yaml", "databasebackupschedule.yaml", "databasemigration.yaml",
                 "databaserestore.yaml")

# What production looks like before dbops: Django's auth_user and the runbook's 001_add_mentorship_tables.sql
# applied by hand (no dbops history), with data and foreign keys in both directions between the app tables.
SCHEMA = """
CREATE TABLE auth_user (
    id serial PRIMARY KEY, username varchar(150) NOT NULL UNIQUE, email varchar(254) NOT NULL,
    is_active boolean NOT NULL DEFAULT true, date_joined timestamptz NOT NULL DEFAULT now());
CREATE TABLE mentorship_mentors (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id INTEGER REFERENCES auth_user(id) ON DELETE CASCADE,
    bio TEXT NOT NULL,
    expertise JSONB DEFAULT '[]',
    rating DECIMAL(3,2) DEFAULT 0.00,
    is_approved BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX idx_mentors_user_id ON mentorship_mentors(user_id);
CREATE TABLE mentorship_bookings (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    mentor_id UUID REFERENCES mentorship_mentors(id) ON DELETE CASCADE,
    mentee_id INTEGER REFERENCES auth_user(id) ON DELETE CASCADE,
    session_date DATE NOT NULL,
    topic VARCHAR(200) NOT NULL,
    status VARCHAR(50) DEFAULT 'pending',
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);
CREATE INDEX idx_bookings_mentor ON mentorship_bookings(mentor_id);
INSERT INTO auth_user (username, email) SELECT 'user' || g, 'user' || g || '@mentorhub.example'
    FROM generate_series(1, %(users)s) g;
INSERT INTO mentorship_mentors (user_id, bio, expertise, rating, is_approved)
    SELECT g, 'Mentor ' || g, jsonb_build_array('python', 'sql'), (g %% 5) + 0.5, g %% 3 > 0
    FROM generate_series(1, %(mentors)s) g;
INSERT INTO mentorship_bookings (mentor_id, mentee_id, session_date, topic, status)
    SELECT m.id, 1 + (g * 7) %% %(users)s, current_date + (g %% 60), 'Session ' || g,
           (ARRAY['pending', 'confirmed', 'done'])[1 + g %% 3]
    FROM generate_series(1, %(bookings)s) g
    JOIN LATERAL (SELECT id FROM mentorship_mentors ORDER BY id OFFSET g %% %(mentors)s LIMIT 1) m ON true;
"""


def create_database(server: PostgresServer, name: str = "mentorhub", *, users: int = 500, mentors: int = 60,
                    bookings: int = 3000) -> str:
    """Create MentorHub as production has it; returns its name."""
    server.create_database(name)
    server.psql(SCHEMA % {"users": users, "mentors": mentors, "bookings": bookings}, name)
    return name


def _point_database(database: dict[str, Any], server: PostgresServer, name: str) -> None:
    if "host" in database:
        database.update(host=server.host, port=server.port, name=name, sslMode="disable")


def _point_storage(storage: dict[str, Any], minio: MinioServer, bucket: str) -> None:
    if "s3" in storage:
        storage["s3"].update(bucket=bucket, endpoint=minio.endpoint, region=minio.region, forcePathStyle=True)


def _walk(node: Any, server: PostgresServer, name: str, minio: MinioServer, bucket: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "database" and isinstance(value, dict):
                _point_database(value, server, name)
            if key == "storage" and isinstance(value, dict):
                _point_storage(value, minio, bucket)
            _walk(value, server, name, minio, bucket)
    elif isinstance(node, list):
        for item in node:
            _walk(item, server, name, minio, bucket)


def local_examples(server: PostgresServer, database: str, minio: MinioServer, bucket: str, *,
                   run_now: bool = True) -> list[dict[str, Any]]:
    """The example documents, unchanged except where they name production.

    Hosts, ports, endpoints, buckets and the Secrets' values point at the test bed; with `run_now` the migration
    runs without waiting for its Sunday window and the schedule ticks every minute. Approval stays Manual.
    """
    documents: list[dict[str, Any]] = []
    for file in EXAMPLE_FILES:
        for document in yaml.safe_load_all((EXAMPLES / file).read_text()):
            if not document:
                continue
            document = copy.deepcopy(document)
            _walk(document.get("spec"), server, database, minio, bucket)
            if document["kind"] == "Secret" and document["metadata"]["name"] == "mentorhub-db":
                document["stringData"] = {"uri": server.uri(database) + "?sslmode=disable", "user": server.user,
                                          "password": server.password}
            elif document["kind"] == "Secret" and document["metadata"]["name"] == "s3-creds":
                document["stringData"] = {"AWS_ACCESS_KEY_ID": minio.access_key,
                                          "AWS_SECRET_ACCESS_KEY": minio.secret_key}
            if "confirmOverwrite" in document.get("spec", {}):
                document["spec"]["confirmOverwrite"] = database
            if document["kind"] == "DatabaseMigration" and run_now:
                document["spec"].pop("window", None)
            elif document["kind"] == "DatabaseBackupSchedule" and run_now:
                document["spec"]["schedule"] = "* * * * *"
            documents.append(document)
    return documents
