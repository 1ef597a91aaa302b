"""A Flyway project adopted as a user would: dotted and underscored versions (V1.1__, V1_2__), a gap, a
comment-only file, a non-transactional CONCURRENTLY index with IF NOT EXISTS, and R__ repeatables; Flyway's
history (dotted versions) imported, the rest applied, repeatables re-applied only when their text changes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.migrate_support import run_dbops
from tests.integration.test_migrate_adoption import psql_file

from dbops.runner.migrations import flyway
from dbops_testbed.postgres import PostgresServer

VIEW = ("CREATE OR REPLACE VIEW account_orders AS SELECT a.id, a.email, count(o.id) AS orders FROM accounts a "
        "LEFT JOIN orders o ON o.account_id = a.id GROUP BY a.id, a.email;\n")


def flyway_project(directory: Path) -> Path:
    directory.mkdir(parents=True)
    files = {
        "V1__create_accounts.sql": ("CREATE TABLE accounts (id bigserial PRIMARY KEY, email text NOT NULL);\n"
                                    "INSERT INTO accounts (email) SELECT 'u' || g || '@example.org' "
                                    "FROM generate_series(1, 200) g;\n"),
        "V1.1__add_name.sql": "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS name text;\n",
        "V1_2__orders.sql": ("CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint NOT NULL "
                             "REFERENCES accounts (id), total numeric(10, 2));\n"
                             "ALTER TABLE accounts ADD COLUMN last_order_id bigint REFERENCES orders (id);\n"),
        "V1.10__placeholder.sql": "-- this change moved to V2; kept so the history stays the same\n",
        "V2__seed_orders.sql": ("INSERT INTO orders (account_id, total) SELECT id, id * 1.5 FROM accounts;\n"
                                "UPDATE accounts a SET last_order_id = o.id FROM orders o WHERE o.account_id = a.id;\n"),
        "V4__orders_index.sql": ("CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_account ON orders (account_id);\n"),
        "V4__orders_index.sql.conf": "executeInTransaction=false\n",
        "R__views.sql": VIEW,
        "R__functions.sql": ("CREATE OR REPLACE FUNCTION order_count(bigint) RETURNS bigint LANGUAGE sql STABLE "
                             "AS $$ SELECT count(*) FROM orders WHERE account_id = $1 $$;\n"),
    }
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_a_flyway_history_with_dotted_versions_and_repeatables_is_adopted(database: tuple[PostgresServer, str],
                                                                         tmp_path: Path) -> None:
    server, db = database
    src = flyway_project(tmp_path / "sql")

    def crc(name: str) -> int:
        return flyway.checksum((src / name).read_text(encoding="utf-8"))

    for name in ("V1__create_accounts.sql", "V1.1__add_name.sql", "V1_2__orders.sql"):
        psql_file(server, db, src / name)
    server.psql(
        "CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50), description"
        " varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum int,"
        " installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),"
        " execution_time int NOT NULL, success boolean NOT NULL);"
        "INSERT INTO flyway_schema_history VALUES"
        f" (1, '1', 'create accounts', 'SQL', 'V1__create_accounts.sql', {crc('V1__create_accounts.sql')}, 'app',"
        " now(), 5, true),"
        f" (2, '1.1', 'add name', 'SQL', 'V1.1__add_name.sql', {crc('V1.1__add_name.sql')}, 'app', now(), 3, true),"
        f" (3, '1.2', 'orders', 'SQL', 'V1_2__orders.sql', {crc('V1_2__orders.sql')}, 'app', now(), 3, true)", db)
    # a script edited after Flyway ran it: the import refuses, naming the file, and imports nothing
    original = (src / "V1.1__add_name.sql").read_text()
    (src / "V1.1__add_name.sql").write_text(original.replace("name text", "name varchar(200)"))
    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--allow-gaps", "--from", "flyway")
    assert code == 2 and doc["reason"] == "MigrationDrift" and "V1.1__add_name.sql" in doc["message"], doc
    assert server.psql("SELECT to_regclass('dbops_migrations') IS NULL", db) == "t"
    (src / "V1.1__add_name.sql").write_text(original.replace("\n", "\r\n"))  # a CRLF checkout is no change
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--source", str(src))
    assert code == 2 and "1.2_orders is followed by 1.10_placeholder" in doc["message"], doc
    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--allow-gaps",
                             "--from", "flyway")
    assert code == 0 and doc["imported"] == ["1", "1.1", "1.2"], doc
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src), "--allow-gaps")
    assert doc["currentVersion"] == "1.2"
    assert doc["pending"] == ["1.10", "2", "4", "R__functions", "R__views"], doc

    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 0, doc["message"]
    assert [a["version"] for a in doc["applied"]] == ["1.10", "2", "4", "R__functions", "R__views"]
    assert doc["previousVersion"] == "1.2" and doc["currentVersion"] == "4"
    assert server.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_account'::regclass", db) == "t"
    assert server.psql("SELECT sum(orders) FROM account_orders", db) == "200"
    assert server.psql("SELECT order_count(1)", db) == "1"
    recorded = server.psql("SELECT string_agg(version || ':' || kind, ',' ORDER BY applied_at, version)"
                           " FROM dbops_migrations", db)
    assert set(recorded.split(",")) == {"1:imported", "1.1:imported", "1.2:imported", "1.10:migration",
                                        "2:migration", "4:migration", "R__functions:repeatable",
                                        "R__views:repeatable"}

    # nothing changed: nothing runs again, repeatables included
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 0 and doc["applied"] == [] and doc["plan"]["pending"] == [], doc

    # the view gains a column: only R__views runs again, after no versioned migration, and is recorded anew
    old_checksum = server.psql("SELECT checksum FROM dbops_migrations WHERE version = 'R__views'", db)
    (src / "R__views.sql").write_text(VIEW.replace("AS orders FROM", "AS orders, a.name FROM")
                                      .replace("GROUP BY a.id, a.email", "GROUP BY a.id, a.email, a.name"))
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src), "--allow-gaps")
    assert code == 0 and doc["pending"] == ["R__views"] and doc["drift"] is None, doc
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 0 and [a["version"] for a in doc["applied"]] == ["R__views"], doc
    assert doc["currentVersion"] == "4"
    assert server.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'account_orders'"
                       " AND column_name = 'name'", db) == "1"
    assert server.psql("SELECT checksum FROM dbops_migrations WHERE version = 'R__views'", db) != old_checksum

    # a dotted target version below the current one needs allowDown, named with its dots
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps",
                             "--target-version", "1_10")
    assert code == 2 and doc["reason"] == "DownNotAllowed" and "target version 1.10" in doc["message"], doc


def test_a_broken_repeatable_is_not_recorded_and_names_its_file(database: tuple[PostgresServer, str],
                                                               tmp_path: Path) -> None:
    server, db = database
    src = tmp_path / "sql"
    src.mkdir()
    (src / "V1__t.sql").write_text("CREATE TABLE t (id int);\n")
    (src / "R__view.sql").write_text("CREATE OR REPLACE VIEW v AS SELECT missing_column FROM t;\n")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 2 and "R__view" in doc["message"] and "missing_column" in doc["message"], doc
    assert doc["currentVersion"] == "1"
    assert server.psql("SELECT string_agg(version, ',') FROM dbops_migrations WHERE success", db) == "1"
    (src / "R__view.sql").write_text("CREATE OR REPLACE VIEW v AS SELECT id FROM t;\n")
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src))
    assert code == 0 and [a["version"] for a in doc["applied"]] == ["R__view"], doc


FLYWAY_HISTORY = ("CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50),"
                  " description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL,"
                  " checksum int, installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),"
                  " execution_time int NOT NULL, success boolean NOT NULL);")


def flyway_row(rank: int, version: str | None, kind: str, script: str, checksum: int | None,
               success: bool = True) -> str:
    shown = "NULL" if version is None else f"'{version}'"
    crc = "NULL" if checksum is None else str(checksum)
    return (f"INSERT INTO flyway_schema_history VALUES ({rank}, {shown}, '{script}', '{kind}', '{script}', {crc},"
            f" 'app', now(), 4, {str(success).lower()});")


def test_flyway_repeatables_are_imported_so_only_a_changed_one_runs_again(database: tuple[PostgresServer, str],
                                                                         tmp_path: Path) -> None:
    """A team switching from Flyway: an existing database baselined at 1, V1.1 and V1_2 applied, the R__ view and
    R__ function applied (the view twice: it changed once under Flyway). Since then R__functions was edited, R__views
    was not. The import keeps both repeatables: the next apply re-runs only R__functions (as `flyway migrate` would),
    not the view a user may not want re-created."""
    server, db = database
    src = flyway_project(tmp_path / "sql")

    def crc(name: str) -> int:
        return flyway.checksum((src / name).read_text(encoding="utf-8"))

    for name in ("V1__create_accounts.sql", "V1.1__add_name.sql", "V1_2__orders.sql", "R__functions.sql",
                 "R__views.sql"):
        psql_file(server, db, src / name)
    # what the view's re-run would undo: a comment set by hand after Flyway created it
    server.psql("COMMENT ON VIEW account_orders IS 'reviewed'", db)
    rows = [FLYWAY_HISTORY,
            "INSERT INTO flyway_schema_history VALUES (0, NULL, '<< Flyway Schema Creation >>', 'SCHEMA', "
            "'\"public\"', NULL, 'app', now(), 0, true);",
            flyway_row(1, "1", "BASELINE", "<< Flyway Baseline >>", None),
            flyway_row(2, "1.1", "SQL", "V1.1__add_name.sql", crc("V1.1__add_name.sql")),
            flyway_row(3, "1.2", "SQL", "V1_2__orders.sql", crc("V1_2__orders.sql")),
            flyway_row(4, None, "SQL", "R__functions.sql", crc("R__functions.sql")),
            flyway_row(5, None, "SQL", "R__views.sql", flyway.checksum("CREATE VIEW an_older_definition;")),
            flyway_row(6, None, "SQL", "R__views.sql", crc("R__views.sql"))]
    server.psql("\n".join(rows), db)
    (src / "R__functions.sql").write_text(
        "CREATE OR REPLACE FUNCTION order_count(bigint) RETURNS bigint LANGUAGE sql STABLE "
        "AS $$ SELECT count(*) * 10 FROM orders WHERE account_id = $1 $$;\n")

    # a repeatable Flyway ran that the source no longer has, and then a failed re-run: each refused, nothing imported
    server.psql(flyway_row(7, None, "SQL", "R__dropped.sql", 12345), db)
    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--allow-gaps", "--from", "flyway")
    assert code == 2 and doc["reason"] == "MigrationDrift" and "R__dropped.sql" in doc["message"], doc
    server.psql("DELETE FROM flyway_schema_history WHERE installed_rank = 7;"
                + flyway_row(7, None, "SQL", "R__views.sql", crc("R__views.sql"), success=False), db)
    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--allow-gaps", "--from", "flyway")
    assert code == 2 and doc["reason"] == "DirtyHistory" and "R__views.sql" in doc["message"], doc
    assert server.psql("SELECT to_regclass('dbops_migrations') IS NULL", db) == "t"
    server.psql("DELETE FROM flyway_schema_history WHERE installed_rank = 7", db)

    code, doc, _ = run_dbops(server, db, "migrate", "import", "--source", str(src), "--allow-gaps", "--from", "flyway")
    assert code == 0 and doc["imported"] == ["1", "1.1", "1.2"], doc
    assert doc["repeatables"] == {"R__functions": "changed", "R__views": "current"}, doc
    assert doc["currentVersion"] == "1.2" and "R__functions" in doc["message"], doc
    code, doc, _ = run_dbops(server, db, "migrate", "status", "--source", str(src), "--allow-gaps")
    assert code == 0 and doc["pending"] == ["1.10", "2", "4", "R__functions"], doc

    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 0, doc["message"]
    assert [a["version"] for a in doc["applied"]] == ["1.10", "2", "4", "R__functions"], doc
    assert server.psql("SELECT obj_description('account_orders'::regclass)", db) == "reviewed"  # not re-created
    assert server.psql("SELECT order_count(1)", db) == "10"  # the edited function is the one deployed
    assert server.psql("SELECT sum(orders) FROM account_orders", db) == "200"
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--source", str(src), "--allow-gaps")
    assert code == 0 and doc["applied"] == [], doc


def test_an_inline_file_takes_the_versions_files_take(database: tuple[PostgresServer, str], tmp_path: Path) -> None:
    """--inline-file: dotted (1.1, 1_2) versions, a gap with --allow-gaps; without it, or with a bad version, the
    entry at fault is named."""
    server, db = database
    items = [{"version": "1", "name": "accounts", "up": "CREATE TABLE accounts (id bigserial PRIMARY KEY);"},
             {"version": "1.1", "name": "add_name", "up": "ALTER TABLE accounts ADD COLUMN name text;"},
             {"version": "1_2", "name": "orders", "up": "CREATE TABLE orders (id bigserial PRIMARY KEY);"},
             {"version": "3", "name": "seed", "up": "INSERT INTO accounts (name) VALUES ('a');"}]
    inline = tmp_path / "inline.json"
    inline.write_text(json.dumps(items))
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--inline-file", str(inline))
    assert code == 2 and "1.2_orders is followed by 3_seed" in doc["message"] and "--allow-gaps" in doc["message"], doc
    code, doc, _ = run_dbops(server, db, "migrate", "apply", "--inline-file", str(inline), "--allow-gaps")
    assert code == 0 and [a["version"] for a in doc["applied"]] == ["1", "1.1", "1.2", "3"], doc
    assert server.psql("SELECT count(*) FROM accounts WHERE name = 'a'", db) == "1"
    inline.write_text(json.dumps([items[0], {**items[1], "version": "1.x"}]))
    code, doc, _ = run_dbops(server, db, "migrate", "plan", "--inline-file", str(inline))
    assert code == 2 and "item 2" in doc["message"] and "'1.x'" in doc["message"], doc
