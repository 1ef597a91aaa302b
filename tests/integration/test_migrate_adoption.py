"""Adopting real histories: golang-migrate and Flyway file sets generated here the way real projects grow
(names with dots, gaps, comment-only files, other tools' no-transaction directives), their history tables
imported into ours, `repair` of an edited file with a reason, and CRLF-only changes that are no drift."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.migrate_support import run_dbops

from dbops.runner.migrations import flyway
from dbops_testbed.postgres import PostgresServer, client_bin_dir


def golang_migrate_history(directory: Path, count: int = 24) -> Path:
    """A golang-migrate style directory: 6-digit versions, a `_v6.0` name, gaps, a comment-only file,
    CONCURRENTLY index files marked with goose/atlas/dbmate directives, data changes and FKs both ways."""
    directory.mkdir(parents=True)
    files: dict[str, str] = {
        "000001_init_schema_v6.0.up.sql": "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);",
        "000001_init_schema_v6.0.down.sql": "DROP TABLE accounts;",
        "000002_projects.up.sql": ("CREATE TABLE projects (id bigserial PRIMARY KEY, owner_id bigint NOT NULL "
                                   "REFERENCES accounts (id), name text);\n"
                                   "ALTER TABLE accounts ADD COLUMN default_project_id bigint;"),
        "000004_default_project_fk.up.sql": ("ALTER TABLE accounts ADD CONSTRAINT accounts_default_project_fk "
                                             "FOREIGN KEY (default_project_id) REFERENCES projects (id);"),
        "000005_noop_after_revert.up.sql": "-- this migration was reverted upstream; kept as a no-op\n",
        "000006_email_index.up.sql": ("-- +goose NO TRANSACTION\n"
                                      "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email ON accounts (email);"),
        "000007_seed.up.sql": ("INSERT INTO accounts (email) SELECT 'user' || g || '@example.org' "
                               "FROM generate_series(1, 300) g;\n"
                               "INSERT INTO projects (owner_id, name) SELECT id, 'p' || id FROM accounts;"),
        "000008_project_name_index.up.sql": ("-- atlas:txmode none\n"
                                             "CREATE INDEX CONCURRENTLY projects_name ON projects (name);"),
    }
    version = 10
    while len([f for f in files if f.endswith(".up.sql")]) < count:
        if version % 3 == 0:
            files[f"{version:06d}_widen_{version}.up.sql"] = (
                "-- migrate:up transaction:false\n"
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS projects_owner_{version} ON projects (owner_id, id);")
        else:
            files[f"{version:06d}_add_column_{version}.up.sql"] = (
                f"ALTER TABLE projects ADD COLUMN c{version} integer DEFAULT {version};\n"
                f"UPDATE projects SET c{version} = id % {version};")
        version += 2  # gaps: branches merged with their own numbers
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def flyway_checksum(path: Path) -> int:
    """What Flyway records for a script (its CRC-32 over the lines; dbops.runner.migrations.flyway)."""
    return flyway.checksum(path.read_text(encoding="utf-8"))


def psql_file(server: PostgresServer, db: str, path: Path) -> None:
    """Run one file as the other tool would (plain psql, autocommit)."""
    subprocess.run([str(client_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", str(path)],
                   env={**server.env(), "PGSSLMODE": "disable"}, check=True, capture_output=True)


def test_golang_migrate_history_is_imported_then_continued(database: tuple[PostgresServer, str],
                                                          tmp_path: Path) -> None:
    server, db = database
    src = golang_migrate_history(tmp_path / "migrations")
    ups = sorted(src.glob("*.up.sql"))
    for path in ups[:6]:  # golang-migrate ran the first six files, and records only the newest version
        psql_file(server, db, path)
    newest = int(ups[5].name.split("_")[0])
    server.psql("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);"
                f"INSERT INTO schema_migrations VALUES ({newest}, false)", db)
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src))
    assert code == 2 and "allow-gaps" in doc["message"]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 2 and doc["reason"] == "BaselineRequired"
    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--allow-gaps",
                             "--from", "golang-migrate")
    assert code == 0, doc
    assert doc["imported"] == [p.name.split("_")[0] for p in ups[:6]]
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == [p.name.split("_")[0] for p in ups[6:]]
    assert server.psql("SELECT count(*) FROM pg_index WHERE NOT indisvalid", db) == "0"
    assert server.psql("SELECT string_agg(kind || ':' || n, ',' ORDER BY kind) FROM (SELECT kind, count(*) n"
                       " FROM dbops_migrations GROUP BY kind) k", db) == f"imported:6,migration:{len(ups) - 6}"
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src), "--allow-gaps")
    assert code == 0 and doc["pending"] == [] and doc["drift"] is None


def test_a_dirty_golang_migrate_history_is_refused(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    server, db = database
    src = golang_migrate_history(tmp_path / "migrations", count=8)
    server.psql("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);"
                "INSERT INTO schema_migrations VALUES (2, true)", db)
    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--allow-gaps",
                             "--from", "golang-migrate")
    assert code == 2 and doc["reason"] == "DirtyHistory" and "dirty at version 2" in doc["message"]
    assert server.psql("SELECT to_regclass('dbops_migrations') IS NULL", db) == "t"


def test_flyway_history_is_imported_and_repair_and_crlf(database: tuple[PostgresServer, str],
                                                       tmp_path: Path) -> None:
    server, db = database
    src = tmp_path / "flyway"
    src.mkdir()
    (src / "V1__create_accounts.sql").write_text("CREATE TABLE accounts (id bigserial PRIMARY KEY, email text);\n")
    (src / "V2__seed.sql").write_text("INSERT INTO accounts (email) VALUES ('a@example.org');\n")
    (src / "V3__email_index.sql").write_text("CREATE INDEX CONCURRENTLY accounts_email ON accounts (email);\n")
    (src / "V3__email_index.sql.conf").write_text("executeInTransaction=false\n")
    (src / "V4__names.sql").write_text("ALTER TABLE accounts ADD COLUMN name text;\n")
    for name in ("V1__create_accounts.sql", "V2__seed.sql"):
        psql_file(server, db, src / name)
    server.psql(
        "CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50), description"
        " varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum int,"
        " installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),"
        " execution_time int NOT NULL, success boolean NOT NULL);"
        "INSERT INTO flyway_schema_history VALUES (1, '1', 'create accounts', 'SQL', 'V1__create_accounts.sql',"
        f" {flyway_checksum(src / 'V1__create_accounts.sql')}, 'app', now(), 5, true),"
        f" (2, '2', 'seed', 'SQL', 'V2__seed.sql', {flyway_checksum(src / 'V2__seed.sql')}, 'app', now(), 3, true)",
        db)
    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--from", "flyway")
    assert code == 0 and doc["imported"] == ["1", "2"], doc
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0, doc
    assert [a["version"] for a in doc["applied"]] == ["3", "4"]
    assert server.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email'::regclass", db) == "t"
    # a checkout on Windows turns every file into CRLF: no drift
    for path in src.glob("*.sql"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src))
    assert code == 0 and doc["drift"] is None, doc
    # an applied file edited on purpose: drift until repaired with a reason
    (src / "V2__seed.sql").write_text("-- seed data for the demo\nINSERT INTO accounts (email) VALUES ('a@example.org');\n")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2 and doc["reason"] == "MigrationDrift" and doc["currentVersion"] == "4"
    code, doc, _ = run_dbops(server, db, "migrate", "repair", "--source", str(src), "--version", "2",
                             "--reason", "comment added to the seed file (PR 42)")
    assert code == 0, doc
    assert "PR 42" in server.psql("SELECT repair_note FROM dbops_migrations WHERE version = '2'", db)
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0 and doc["applied"] == [], doc
