"""The size report's snapshot equals what PostgreSQL's size functions and statistics views say, on PostgreSQL 15
and 18: TOAST, several indexes, partitions, a materialized view, a table without an index, index scans."""

from __future__ import annotations

import time
from typing import Any

import psycopg

from dbops.runner import relation_sizes
from dbops_testbed.postgres import PostgresServer

SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.docs (id bigint PRIMARY KEY, title text NOT NULL, body text);
CREATE INDEX docs_title_idx ON app.docs (title);
CREATE UNIQUE INDEX docs_title_lower_idx ON app.docs (lower(title), id);
INSERT INTO app.docs SELECT g, 'doc ' || g, repeat(md5(g::text), 400) FROM generate_series(1, 3000) g;
CREATE TABLE events (id bigint, at date NOT NULL, kind text) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX events_at_idx ON events (at);
INSERT INTO events SELECT g, date '2025-01-01' + (g % 700), 'k' FROM generate_series(1, 20000) g;
CREATE TABLE bare (i int);
INSERT INTO bare SELECT generate_series(1, 500);
CREATE MATERIALIZED VIEW doc_titles AS SELECT id, title FROM app.docs;
CREATE INDEX doc_titles_idx ON doc_titles (title);
ANALYZE;
"""

# What the report meant from the start: the total size and the statistics views.
EXPECTED = """
SELECT n.nspname || '.' || c.relname, c.relkind, pg_total_relation_size(c.oid), coalesce(st.n_live_tup, 0),
       coalesce(si.idx_scan, st.idx_scan, 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid LEFT JOIN pg_stat_user_indexes si ON si.indexrelid = c.oid
WHERE c.relkind IN ('r', 'm', 'i') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
"""


def test_snapshot_matches_total_relation_size_and_the_statistics_views(
        database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    with psycopg.connect(server.uri(db), sslmode="disable", autocommit=True) as connection:
        connection.execute("SET enable_seqscan = off")
        for _ in range(3):
            connection.execute("SELECT count(*) FROM app.docs WHERE title = 'doc 7'")
            connection.execute("SELECT count(*) FROM events WHERE at = '2025-03-01'")
        deadline = time.monotonic() + 30
        while True:  # the statistics reach shared memory when the backend reports them (up to ~1 s)
            connection.execute("SELECT pg_stat_clear_snapshot()")
            scans = connection.execute("SELECT sum(idx_scan) FROM pg_stat_user_indexes").fetchone()
            if (scans and scans[0] and scans[0] >= 6) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        connection.execute("SELECT pg_stat_clear_snapshot()")
        snapshot = relation_sizes.snapshot(connection)
        expected = {name: (relkind, size, rows, scans)
                    for name, relkind, size, rows, scans in connection.execute(EXPECTED).fetchall()}
    assert {"app.docs", "app.docs_title_idx", "public.events_2025", "public.bare", "public.doc_titles",
            "public.doc_titles_idx"} <= set(snapshot)
    assert set(snapshot) == set(expected)
    for name, relation in snapshot.items():
        relkind, size, rows, scans = expected[name]
        assert relation.kind == ("index" if relkind == "i" else "table"), name
        assert relation.bytes == size, name
        assert relation.scans == scans, name
        assert relation.rows == (0 if relkind == "i" else rows), name
    docs = snapshot["app.docs"]
    assert docs.bytes > 3000 * 100 and docs.rows == 3000 and docs.scans >= 3, docs  # TOAST and indexes counted
    assert snapshot["app.docs_title_idx"].table == "app.docs"
    assert snapshot["public.events_2025"].scans >= 3 and snapshot["public.bare"].scans == 0


def _as_tuples(snapshot: dict[str, relation_sizes.Relation]) -> dict[str, tuple[str, str, int, int, int]]:
    return {name: (r.kind, r.table, r.bytes, r.rows, r.scans) for name, r in snapshot.items()}


def test_a_second_session_measures_half_and_the_report_is_the_same(database: tuple[PostgresServer, str]) -> None:
    """P6: two sessions measure half of the relations each at the same time; the snapshot is what one session
    measures, also when the helper fails mid-way or the role may open only one connection."""
    server, db = database
    server.psql(SCHEMA, db)
    server.psql("CREATE ROLE single LOGIN PASSWORD 'single-pw' CONNECTION LIMIT 1;"
                f" GRANT ALL ON DATABASE {db} TO single; GRANT USAGE ON SCHEMA app TO single", db)
    with psycopg.connect(server.uri(db), sslmode="disable", autocommit=True,
                         application_name="dbops") as connection:
        alone = _as_tuples(relation_sizes.snapshot(connection))
        with relation_sizes.second_session(connection) as helper:
            assert helper is not None
            row = helper.execute("SELECT current_database(), current_user, current_setting('application_name'),"
                                 " pg_backend_pid()").fetchone()
            assert row is not None and row[:3] == (db, server.user, "dbops"), row
            assert row[3] != connection.info.backend_pid
            assert _as_tuples(relation_sizes.snapshot(connection, helper)) == alone
            helper_pid = row[3]
        assert _gone(connection, helper_pid)  # closed with the block
        broken = psycopg.connect(server.uri(db), sslmode="disable", autocommit=True)
        broken.close()
        assert _as_tuples(relation_sizes.snapshot(connection, broken)) == alone
    with psycopg.connect(server.uri(db, user="single", password="single-pw"), sslmode="disable",
                         autocommit=True) as limited, relation_sizes.second_session(limited) as helper:
        assert helper is None  # the role's one connection is in use
        assert set(relation_sizes.snapshot(limited, helper)) == set(alone)


def _gone(connection: psycopg.Connection[Any], pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if connection.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,):
            return True
        time.sleep(0.05)
    return False
