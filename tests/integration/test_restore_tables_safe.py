"""R18: a table restore after rows were added and referenced since the backup never loses data silently.

A Pagila-like schema: FKs in both directions (customer <-> rental), a partitioned ``payment`` with
ON DELETE CASCADE into ``rental``, serial sequences. Rows are added, changed and deleted after the backup.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration import datasets
from tests.integration.runner_cli import Run, run_dbops, runner_env

from dbops_testbed.postgres import PostgresServer

SCHEMA = """
CREATE TABLE customer (customer_id serial PRIMARY KEY, name text NOT NULL, last_rental_id int);
CREATE TABLE film (film_id serial PRIMARY KEY, title text NOT NULL);
CREATE TABLE inventory (inventory_id serial PRIMARY KEY, film_id int NOT NULL REFERENCES film);
CREATE TABLE rental (
    rental_id serial PRIMARY KEY,
    inventory_id int NOT NULL REFERENCES inventory,
    customer_id int NOT NULL REFERENCES customer,
    rented_at timestamptz NOT NULL,
    returned_at timestamptz
);
ALTER TABLE customer ADD CONSTRAINT customer_last_rental_fkey
    FOREIGN KEY (last_rental_id) REFERENCES rental ON DELETE SET NULL;
CREATE TABLE payment (
    payment_id serial,
    customer_id int NOT NULL REFERENCES customer,
    rental_id int REFERENCES rental ON DELETE CASCADE,
    amount numeric(6, 2) NOT NULL,
    paid_at timestamptz NOT NULL,
    PRIMARY KEY (payment_id, paid_at)
) PARTITION BY RANGE (paid_at);
CREATE TABLE payment_2026_01 PARTITION OF payment FOR VALUES FROM ('2026-01-01') TO ('2026-02-01');
CREATE TABLE payment_2026_02 PARTITION OF payment FOR VALUES FROM ('2026-02-01') TO ('2026-03-01');
INSERT INTO customer (name) SELECT 'customer ' || g FROM generate_series(1, 50) g;
INSERT INTO film (title) SELECT 'film ' || g FROM generate_series(1, 20) g;
INSERT INTO inventory (film_id) SELECT 1 + g % 20 FROM generate_series(1, 60) g;
INSERT INTO rental (inventory_id, customer_id, rented_at, returned_at)
SELECT 1 + g % 60, 1 + g % 50, '2026-01-01'::timestamptz + g * interval '3 hours',
       CASE WHEN g % 5 = 0 THEN NULL ELSE '2026-01-02'::timestamptz + g * interval '3 hours' END
FROM generate_series(1, 300) g;
UPDATE customer c SET last_rental_id = (SELECT max(rental_id) FROM rental r WHERE r.customer_id = c.customer_id);
INSERT INTO payment (customer_id, rental_id, amount, paid_at)
SELECT r.customer_id, r.rental_id, 1 + r.rental_id % 7, r.rented_at + interval '1 day'
FROM rental r WHERE r.rented_at < '2026-02-27';
"""

AFTER_BACKUP_NEW_RENTAL = """
INSERT INTO rental (inventory_id, customer_id, rented_at) VALUES (1, 1, '2026-02-20');
INSERT INTO payment (customer_id, rental_id, amount, paid_at)
    SELECT 1, max(rental_id), 9.99, '2026-02-21' FROM rental;
UPDATE customer SET last_rental_id = (SELECT max(rental_id) FROM rental) WHERE customer_id = 1;
"""


def _backup(server: PostgresServer, dbname: str, tmp_path: Path) -> Path:
    run = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s"), "--name", "nightly"],
                    runner_env(server), tmp_path)
    assert run.code == 0, run.stderr
    return tmp_path / "s" / "local" / dbname / "nightly"


def _restore(server: PostgresServer, dbname: str, folder: Path, tmp_path: Path, *args: str) -> Run:
    return run_dbops(["restore", "--from", str(folder), "--dbname", dbname, "--mode", "tables", *args],
                     runner_env(server), tmp_path)


def _rows(server: PostgresServer, dbname: str, query: str) -> list[str]:
    return server.psql(query, dbname).splitlines()


@pytest.fixture
def pagila(database: tuple[PostgresServer, str], tmp_path: Path) -> tuple[PostgresServer, str, Path]:
    server, dbname = database
    server.psql(SCHEMA, dbname)
    return server, dbname, _backup(server, dbname, tmp_path)


def test_replace_refuses_to_break_newer_references_and_changes_nothing(
    pagila: tuple[PostgresServer, str, Path], tmp_path: Path
) -> None:
    server, dbname, folder = pagila
    server.psql(AFTER_BACKUP_NEW_RENTAL, dbname)
    before = datasets.table_checksums(server, dbname)

    unconfirmed = _restore(server, dbname, folder, tmp_path, "--table", "rental")
    assert unconfirmed.code == 2, unconfirmed.output
    assert unconfirmed.result["reason"] == "OverwriteNotConfirmed"
    assert f"--confirm-overwrite {dbname}" in unconfirmed.result["message"]
    assert datasets.table_checksums(server, dbname) == before

    run = _restore(server, dbname, folder, tmp_path, "--table", "rental", "--confirm-overwrite", dbname)
    assert run.code == 2, run.output
    assert run.result["reason"] == "ForeignKeyViolation"
    message = run.result["message"]
    # Both referencing tables are named with the constraint and the count of rows that would be orphaned.
    assert "payment_rental_id_fkey" in message and "1 rows of public.payment" in message, message
    assert "customer_last_rental_fkey" in message and "1 rows of public.customer" in message, message
    assert "Traceback" not in run.output
    assert datasets.table_checksums(server, dbname) == before


def test_replace_restores_exact_rows_when_nothing_references_newer_ones(
    pagila: tuple[PostgresServer, str, Path], tmp_path: Path
) -> None:
    server, dbname, folder = pagila
    backed_up = datasets.table_checksums(server, dbname)
    server.psql("UPDATE rental SET returned_at = '2031-01-01' WHERE rental_id % 7 = 0;"
                "INSERT INTO rental (inventory_id, customer_id, rented_at) VALUES (2, 2, '2026-03-01');"
                "UPDATE film SET title = 'changed';", dbname)
    changed = datasets.table_checksums(server, dbname)

    run = _restore(server, dbname, folder, tmp_path, "--table", "rental", "--confirm-overwrite", dbname,
                   "--strategy", "replace")
    assert run.code == 0, run.output
    after = datasets.table_checksums(server, dbname)
    assert after["public.rental"] == backed_up["public.rental"]
    assert after["public.rental_rental_id_seq"] == backed_up["public.rental_rental_id_seq"]
    assert after["public.film"] == changed["public.film"]  # not named: left alone
    assert after["public.payment_2026_01"] == backed_up["public.payment_2026_01"]  # no cascade fired
    changes = run.result["changes"]["public.rental"]
    assert changes == {"inserted": 0, "updated": 42, "deleted": 1, "differing": 42}


def test_merge_brings_deleted_rows_back_and_keeps_every_newer_row(
    pagila: tuple[PostgresServer, str, Path], tmp_path: Path
) -> None:
    """Someone deleted 40 rentals (their payments went with them by cascade) and changed one after the backup."""
    server, dbname, folder = pagila
    backed_up = datasets.table_checksums(server, dbname)
    server.psql(AFTER_BACKUP_NEW_RENTAL, dbname)
    server.psql("UPDATE customer SET last_rental_id = NULL WHERE last_rental_id BETWEEN 101 AND 140;"
                "DELETE FROM rental WHERE rental_id BETWEEN 101 AND 140;"
                "UPDATE rental SET returned_at = '2030-01-01' WHERE rental_id = 7;", dbname)
    newest = _rows(server, dbname, "SELECT rental_id FROM rental WHERE rental_id > 300 ORDER BY 1")

    run = _restore(server, dbname, folder, tmp_path, "--table", "rental", "--table", "payment",
                   "--strategy", "merge")
    assert run.code == 0, run.output
    # The partitioned parent was named: its partitions were restored and are listed.
    assert run.result["tables"] == ["public.payment_2026_01", "public.payment_2026_02", "public.rental"]
    assert run.result["changes"]["public.rental"] == {"inserted": 40, "updated": 0, "deleted": 0, "differing": 1}
    assert "public.rental: 1 rows differ" in run.result["message"]
    assert _rows(server, dbname, "SELECT count(*) FROM rental WHERE rental_id BETWEEN 101 AND 140") == ["40"]
    assert _rows(server, dbname, "SELECT rental_id FROM rental WHERE rental_id > 300 ORDER BY 1") == newest
    assert _rows(server, dbname, "SELECT returned_at::date FROM rental WHERE rental_id = 7") == ["2030-01-01"]
    assert _rows(server, dbname, "SELECT count(*) FROM payment WHERE amount = 9.99") == ["1"]
    payments = int(_rows(server, dbname, "SELECT count(*) FROM payment")[0])
    assert payments == int(backed_up["public.payment_2026_01"].split(":")[0]) + int(
        backed_up["public.payment_2026_02"].split(":")[0]) + 1
    # The sequence never goes back below rows that exist.
    server.psql("INSERT INTO rental (inventory_id, customer_id, rented_at) VALUES (3, 3, '2026-03-02')", dbname)

    overwrite = _restore(server, dbname, folder, tmp_path, "--table", "rental", "--strategy", "merge",
                         "--on-conflict", "overwrite")
    assert overwrite.code == 2 and overwrite.result["reason"] == "OverwriteNotConfirmed", overwrite.output
    overwrite = _restore(server, dbname, folder, tmp_path, "--table", "rental", "--strategy", "merge",
                         "--on-conflict", "overwrite", "--confirm-overwrite", dbname)
    assert overwrite.code == 0, overwrite.output
    assert overwrite.result["changes"]["public.rental"]["updated"] == 1
    assert _rows(server, dbname, "SELECT returned_at IS NULL OR returned_at < '2030-01-01' FROM rental "
                 "WHERE rental_id = 7") == ["t"]
    assert len(_rows(server, dbname, "SELECT rental_id FROM rental WHERE rental_id > 300")) == 2


def test_missing_only_inserts_missing_rows_and_touches_nothing_else(
    pagila: tuple[PostgresServer, str, Path], tmp_path: Path
) -> None:
    server, dbname, folder = pagila
    backed_up = datasets.table_checksums(server, dbname)
    deleted = int(_rows(server, dbname, "SELECT count(*) FROM payment WHERE payment_id % 10 = 0")[0])
    assert deleted > 0
    server.psql("DELETE FROM payment WHERE payment_id % 10 = 0; UPDATE payment SET amount = 0 WHERE payment_id = 1",
                dbname)
    run = _restore(server, dbname, folder, tmp_path, "--table", "payment", "--strategy", "missing-only")
    assert run.code == 0, run.output
    after = datasets.table_checksums(server, dbname)
    total = sum(run.result["changes"][t]["inserted"] for t in ("public.payment_2026_01", "public.payment_2026_02"))
    assert total == deleted
    assert run.result["changes"]["public.payment_2026_01"]["differing"] == 0  # not compared
    assert _rows(server, dbname, "SELECT amount FROM payment WHERE payment_id = 1") == ["0.00"]
    assert after["public.rental"] == backed_up["public.rental"]
    assert _rows(server, dbname, "SELECT count(*) FROM payment WHERE payment_id % 10 = 0") == [str(deleted)]


def test_partition_parent_unknown_to_the_target_and_non_table_are_named(
    pagila: tuple[PostgresServer, str, Path], tmp_path: Path
) -> None:
    server, dbname, folder = pagila
    run = _restore(server, dbname, folder, tmp_path, "--table", "nope", "--strategy", "merge")
    assert run.code == 2 and "table 'nope' is not in backup nightly" in run.result["message"], run.output


def test_non_superuser_replace_never_cascades_into_other_tables(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    """As the owning role (triggers on, ON DELETE CASCADE live) a Replace must refuse, not delete payments."""
    server, dbname = database
    role = f"app_{dbname[-8:]}"
    server.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'app-pw'; ALTER DATABASE {dbname} OWNER TO {role}")
    try:
        env = runner_env(server, PGUSER=role, PGPASSWORD="app-pw")
        server.psql(f"SET ROLE {role};" + SCHEMA, dbname)
        run = run_dbops(["backup", "--dbname", dbname, "--storage", str(tmp_path / "s"), "--name", "n"], env,
                        tmp_path)
        assert run.code == 0, run.output
        server.psql(AFTER_BACKUP_NEW_RENTAL, dbname)
        before = datasets.table_checksums(server, dbname)
        run = run_dbops(["restore", "--from", str(tmp_path / "s" / "local" / dbname / "n"), "--dbname", dbname,
                         "--mode", "tables", "--table", "rental", "--confirm-overwrite", dbname], env, tmp_path)
        assert run.code == 2 and run.result["reason"] == "ForeignKeyViolation", run.output
        assert "payment_rental_id_fkey" in run.result["message"]
        assert datasets.table_checksums(server, dbname) == before
        merged = run_dbops(["restore", "--from", str(tmp_path / "s" / "local" / dbname / "n"), "--dbname", dbname,
                            "--mode", "tables", "--table", "rental", "--strategy", "merge"], env, tmp_path)
        assert merged.code == 0, merged.output
        assert datasets.table_checksums(server, dbname) == before  # nothing was missing
    finally:
        server.psql(f"ALTER DATABASE {dbname} OWNER TO {server.user}; REASSIGN OWNED BY {role} TO {server.user};"
                    f"DROP OWNED BY {role}", dbname)
        server.psql(f"DROP ROLE IF EXISTS {role}")
