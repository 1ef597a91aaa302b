"""The verification size guards of a DatabaseMigration (spec.verify.rowCounts.exactCountMaxSize and
spec.verify.orphanScanMaxSize) as the operator's Jobs take them: the args built from the spec, run by the real
runner on PostgreSQL 15 and 18.

Data as a user has it: users ⇄ bookings (foreign keys both ways, one of them NOT VALID with orphans left by an
old bug), a partitioned events table referencing bookings; events and bookings are the large tables."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.migrate_support import run_dbops

from dbops.api.migration import DatabaseMigrationSpec
from dbops.specs import command_jobs, framework_snapshot
from dbops_testbed.postgres import PostgresServer

SCHEMA = """
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, last_booking_id int);
CREATE TABLE bookings (id serial PRIMARY KEY, user_id bigint NOT NULL, starts_at date NOT NULL,
                       note text NOT NULL DEFAULT repeat('x', 60));
CREATE TABLE events (id bigserial, at date NOT NULL, booking_id int REFERENCES bookings (id) ON DELETE CASCADE,
                     payload text NOT NULL DEFAULT repeat('y', 80)) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO users (email) SELECT 'u' || g || '@example.org' FROM generate_series(1, 40) g;
INSERT INTO bookings (user_id, starts_at) SELECT 1 + g % 40, date '2025-06-01' + g % 300
    FROM generate_series(1, 3000) g;
-- an old bug left bookings of deleted users, and a user pointing at a booking that is gone: both keys NOT VALID
INSERT INTO bookings (user_id, starts_at) VALUES (9001, '2025-07-01'), (9002, '2025-07-02');
ALTER TABLE bookings ADD CONSTRAINT bookings_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
UPDATE users SET last_booking_id = id * 3;
UPDATE users SET last_booking_id = 99999 WHERE id = 7;
ALTER TABLE users ADD CONSTRAINT users_last_booking_fk FOREIGN KEY (last_booking_id) REFERENCES bookings (id)
    ON DELETE SET NULL
    NOT VALID;
INSERT INTO events (at, booking_id) SELECT date '2025-10-01' + (g % 200), 1 + g % 3000
    FROM generate_series(0, 3999) g;
ANALYZE;
"""
BASE: dict[str, Any] = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                        "source": {"command": {"image": "app:1", "command": ["python", "manage.py", "migrate"]}}}


def spec(verify: dict[str, Any]) -> DatabaseMigrationSpec:
    return DatabaseMigrationSpec.model_validate({**BASE, "verify": verify})


def result(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in doc["verification"] if v["name"] == name)


def sizes(server: PostgresServer, db: str) -> dict[str, int]:
    text = server.psql("SELECT json_object_agg(relname, pg_total_relation_size(oid)) FROM pg_class "
                       "WHERE relname IN ('users', 'bookings', 'events_2025')", db)
    return {name: int(size) for name, size in json.loads(text).items()}


def test_exact_count_bound_from_the_spec_estimates_the_large_tables_before_and_after_the_command(
        database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    measured = sizes(server, db)
    assert measured["users"] < 64 * 1024 < measured["bookings"], measured  # the bound splits them
    migration = spec({"builtin": ["foreignKeys", "rowCounts"],
                      "rowCounts": {"exactCountMaxSize": "64Ki", "tolerancePercent": 5}})
    # the command Job's init container, as the operator builds it
    code, doc, stderr = run_dbops(server, db, *framework_snapshot.snapshot_args(migration, "rev-1"))
    assert code == 0 and doc["recorded"] is True, (doc, stderr)
    recorded = json.loads(server.psql(
        "SELECT measures -> 'rowCounts' FROM dbops_framework_snapshots WHERE run = 'rev-1'", db))
    assert recorded["exactMaxBytes"] == 65536
    assert recorded["estimated"] == ["public.bookings", "public.events"]  # events: its partitions added up
    assert recorded["counts"]["public.users"] == 40 and recorded["counts"]["public.events"] == 4000

    # the framework's data migration: prunes old bookings (and their events, ON DELETE CASCADE)
    server.psql("DELETE FROM bookings WHERE starts_at < date '2025-07-01'", db)
    gone = 3002 - int(server.psql("SELECT count(*) FROM bookings", db))
    assert gone >= 300  # 10%, beyond the 5% tolerance

    code, doc, _ = run_dbops(server, db, *command_jobs.verify_db_args(migration, checks_file=False,
                                                                       snapshot_run="rev-1"))
    assert code == 1, doc
    detail = result(doc, "rowCounts")["detail"]
    assert f"public.bookings 3002→{3002 - gone}" in detail, detail  # the estimate saw the DELETE at once
    assert "estimated from statistics (n_live_tup) (over 0.062 MiB): public.bookings, public.events" in detail
    assert "public.users" not in detail.split("estimated")[1]


def test_exact_count_bound_zero_counts_every_table_exactly(database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    migration = spec({"builtin": ["rowCounts"], "rowCounts": {"exactCountMaxSize": "0"}})
    code, doc, stderr = run_dbops(server, db, *framework_snapshot.snapshot_args(migration, "rev-1"))
    assert code == 0 and "(0 estimated)" in doc["message"], (doc, stderr)
    code, doc, _ = run_dbops(server, db, *command_jobs.verify_db_args(migration, checks_file=False,
                                                                       snapshot_run="rev-1"))
    assert code == 0, doc
    assert "estimated" not in result(doc, "rowCounts")["detail"]


def test_orphan_scan_bound_from_the_spec_skips_large_tables_and_names_them(
        database: tuple[PostgresServer, str]) -> None:
    server, db = database
    server.psql(SCHEMA, db)
    guarded = spec({"builtin": ["foreignKeys", "orphans"], "orphanScanMaxSize": "64Ki"})
    code, doc, _ = run_dbops(server, db, *command_jobs.verify_db_args(guarded, checks_file=False))
    # users is small: its orphan (a booking that is gone) is counted; bookings and events are over the bound
    assert code == 1, doc
    orphans = [v for v in doc["verification"] if v["name"].startswith("orphans:")]
    assert [v["name"] for v in orphans] == ["orphans:public.users.users_last_booking_fk"], orphans
    detail = result(doc, "foreignKeys")["detail"]
    assert "orphan count skipped on 2 keys of tables over 65536 bytes" in detail, detail
    assert "public.bookings.bookings_user_fk" in detail and "public.events.events_booking_id_fkey" in detail

    every = spec({"builtin": ["foreignKeys", "orphans"], "orphanScanMaxSize": "0"})
    code, doc, _ = run_dbops(server, db, *command_jobs.verify_db_args(every, checks_file=False))
    assert code == 1, doc
    names = {v["name"] for v in doc["verification"] if v["name"].startswith("orphans:")}
    assert names == {"orphans:public.users.users_last_booking_fk", "orphans:public.bookings.bookings_user_fk"}
    assert "2 rows of public.bookings(user_id) have no match in public.users(id)" in \
        result(doc, "orphans:public.bookings.bookings_user_fk")["detail"]
    assert "skipped" not in result(doc, "foreignKeys")["detail"]


def test_the_api_server_the_operator_and_the_runner_agree_on_size_guards(installed_crds: Any, namespace: str,
                                                                         kube_client: Any) -> None:
    """R19 for the size guards, every pooled quantity in both fields and both modes (the property test draws them
    too, but rarely with a builtin that uses them): admitted ⇔ valid for pydantic, and then every runner container
    of the Jobs built from it (the command Job's snapshot init container too) takes its args."""
    from pydantic import ValidationError
    from tests.integration.admission import Admission
    from tests.integration.spec_strategies import POOLS
    from tests.integration.test_admission_fuzz import _runner_args, children

    from dbops.api.kinds import ALL_KINDS
    from dbops.cli.main import check_arguments

    admission = Admission(kube_client, namespace)
    kind = next(k for k in ALL_KINDS if k.kind == "DatabaseMigration")
    sql_source = {"configMapRef": {"name": "m"}}
    verdicts, flags = {}, 0
    for value in [*POOLS["quantity"], "1.5Gi", "256 MiB", "", "1e999999999", "1e99999999999999999999"]:
        for verify in ({"rowCounts": {"exactCountMaxSize": value}}, {"orphanScanMaxSize": value}):
            for source in (BASE["source"], sql_source):
                body = {**BASE, "source": source, "verify": {**verify, "builtin": ["orphans", "rowCounts"]}}
                admitted, message, stored = admission.stored("DatabaseMigration", body)
                try:
                    model = DatabaseMigrationSpec.model_validate(stored if admitted else body, strict=True)
                except ValidationError as error:
                    assert not admitted, (value, verify, str(error))
                    verdicts[value] = False
                    continue
                assert admitted, (value, verify, "valid for pydantic, refused by the API server: " + message)
                verdicts[value] = True
                for manifest in children(kind, model, namespace):
                    for args in _runner_args(manifest):
                        check_arguments(args)
                        flags += sum(flag in args for flag in ("--row-count-exact-max-mb", "--orphan-scan-max-mb"))
    assert verdicts["256Mi"] and verdicts["100m"] and verdicts["0"] and verdicts["2Ei"]
    assert not verdicts["1GBB"] and not verdicts["-1"] and not verdicts["256 MiB"] and not verdicts[""]
    assert flags >= 20  # the guards reached the runner's parsers
    stored = admission.stored("DatabaseMigration", BASE)[2]["verify"]  # the defaults the API server fills in
    assert stored["orphanScanMaxSize"] == stored["rowCounts"]["exactCountMaxSize"] == "256Mi"
