"""goose and dbmate single-file histories as their users have them: each file's Up section applied, its Down
section kept for `migrate down` (never run by `apply`), FKs both ways, a partitioned table, a sequence, a
plpgsql trigger function in a StatementBegin/End block and CONCURRENTLY files under either tool's directive."""

from __future__ import annotations

from pathlib import Path

from tests.integration.migrate_support import history_rows, run_dbops, table_exists

from dbops_testbed.postgres import PostgresServer

GOOSE = {
    "00001_users.sql": """-- +goose Up
CREATE SEQUENCE invoice_numbers START 1000;
CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, team_id bigint);
CREATE TABLE teams (id bigserial PRIMARY KEY, owner_id bigint NOT NULL REFERENCES users (id));
ALTER TABLE users ADD CONSTRAINT users_team_fk FOREIGN KEY (team_id) REFERENCES teams (id);

-- +goose Down
ALTER TABLE users DROP CONSTRAINT users_team_fk;
DROP TABLE teams;
DROP TABLE users;
DROP SEQUENCE invoice_numbers;
""",
    "00002_lowercase_email.sql": """-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION users_email_lower() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.email := lower(NEW.email);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER users_email_lower BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_email_lower();

-- +goose Down
DROP TRIGGER users_email_lower ON users;
DROP FUNCTION users_email_lower();
""",
    "00003_invoices.sql": """-- +goose Up
CREATE TABLE invoices (number bigint NOT NULL DEFAULT nextval('invoice_numbers'), user_id bigint NOT NULL
    REFERENCES users (id), issued date NOT NULL, PRIMARY KEY (number, issued)) PARTITION BY RANGE (issued);
CREATE TABLE invoices_2026 PARTITION OF invoices FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO users (email) SELECT 'User' || g || '@Example.org' FROM generate_series(1, 50) g;
INSERT INTO teams (owner_id) SELECT id FROM users ORDER BY id LIMIT 10;
UPDATE users SET team_id = (SELECT min(id) FROM teams) + id % 10;
INSERT INTO invoices (user_id, issued) SELECT id, date '2026-03-01' FROM users;

-- +goose Down
DROP TABLE invoices;
UPDATE users SET team_id = NULL;
DELETE FROM teams;
DELETE FROM users;
""",
    "00004_reverted.sql": """-- +goose Up
-- superseded by 00005; kept so goose's numbering stays the same

-- +goose Down
SELECT 1;
""",
    "00005_email_index.sql": """-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS users_email;
""",
}

DBMATE = {
    "20260101120000_accounts.up.sql": """-- migrate:up
CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);
INSERT INTO accounts (email) SELECT 'a' || g || '@example.org' FROM generate_series(1, 20) g;

-- migrate:down
DROP TABLE accounts;
""",
    "20260102090000_accounts_email.up.sql": """-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY accounts_email ON accounts (email);

-- migrate:down transaction:false
DROP INDEX CONCURRENTLY accounts_email;
""",
}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_a_goose_history_applies_its_up_sections_only_and_goes_down_by_its_down_sections(
        database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    """Regression: `apply` ran each file's Down section too (users created, then dropped; exit 0, recorded)."""
    server, db = database
    src = write(tmp_path / "goose", GOOSE)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["00001", "00002", "00003", "00004", "00005"]
    for name in ("users", "teams", "invoices", "invoices_2026", "invoice_numbers", "users_email"):
        assert table_exists(server, db, name), name
    assert server.psql("SELECT count(*), count(team_id), count(*) FILTER (WHERE email = lower(email)) FROM users",
                       db) == "50|50|50"  # the trigger ran
    assert server.psql("SELECT count(*), min(number) FROM invoices", db) == "50|1000"
    assert server.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass", db) == "t"
    assert server.psql("SELECT count(*) FROM dbops_migrations WHERE success", db) == "5"
    code, doc, _ = run_dbops(server, db, "migrate", "down", "--source", str(src), "--to", "00002")
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["00005", "00004", "00003"]
    assert not table_exists(server, db, "invoices") and not table_exists(server, db, "users_email")
    assert server.psql("SELECT count(*) FROM users", db) == "0"
    assert table_exists(server, db, "teams")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert server.psql("SELECT count(*), min(number) FROM invoices", db) == "50|1050"  # the sequence kept going
    assert "00005" in history_rows(server, db)


def test_a_dbmate_history_with_no_transaction_sections(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    """dbmate files renamed to golang-migrate names (as users were told to before): regression, the down section
    ran in `apply` (accounts created, filled and dropped)."""
    server, db = database
    src = write(tmp_path / "dbmate", DBMATE)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 0, doc
    assert server.psql("SELECT count(*) FROM accounts", db) == "20"
    assert server.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email'::regclass", db) == "t"
    code, doc, _ = run_dbops(server, db, "migrate", "down", "--source", str(src), "--allow-gaps", "--to", "0")
    assert code == 0, doc
    assert not table_exists(server, db, "accounts")
