"""P6, second bench: a realistic 150-migration history (``bench/migration_history.py``) — `dbops migrate apply`
vs `psql` running the same files in order, each in its own transaction as dbops does.

Run: python bench/migrate_history_bench.py [--rounds 5] [--major 18] [--scale 1]

psql runs the files the two ways a team would without dbops, both with ``ON_ERROR_STOP``:
*one session* (the ratio printed last): one ``psql -f`` of a driver that wraps each file in
``BEGIN; \\i file; COMMIT;`` (the no-transaction files bare); with ``--per-file`` also ``psql -1 -f FILE`` per
file (``-1`` left out for no-transaction files), as a shell loop does. dbops runs ``migrate apply --source DIR`` with its defaults (lint, history,
advisory lock, timeouts, post-migration checks). Each run gets a fresh database; after a warm-up of each
(whose schemas are compared with ``pg_dump --schema-only``), the rounds are interleaved (alternating who goes
first) so load hits every tool alike. Prints each round, the load average, and last the median ratio dbops / psql one session.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testbed"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bytecode import compile_dbops
from cpu_meter import Usage, measure
from migration_history import history, no_transaction

from dbops_testbed.postgres import PostgresServer, client_bin_dir, running_postgres


def write_inputs(directory: Path, scale: int) -> tuple[Path, Path, list[tuple[Path, bool]]]:
    """The migrations directory, the psql driver file, and (file, no-transaction) in order."""
    source = directory / "migrations"
    source.mkdir()
    files: list[tuple[Path, bool]] = []
    for number, (name, sql) in enumerate(history(scale), start=1):
        path = source / f"{number:04d}_{name}.up.sql"
        path.write_text(sql)
        files.append((path, no_transaction(sql)))
    driver = directory / "driver.sql"
    driver.write_text("".join(f"\\i {path}\n" if bare else f"BEGIN;\n\\i {path}\nCOMMIT;\n" for path, bare in files))
    return source, driver, files


def _fresh(server: PostgresServer) -> str:
    name = f"h_{uuid.uuid4().hex[:8]}"
    server.create_database(name)
    return name


def _psql(server: PostgresServer, db: str, *args: str) -> None:
    env = {**os.environ, **server.env(), "PGSSLMODE": "disable"}
    subprocess.run([str(client_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, *args],
                   env=env, check=True, capture_output=True)


def run_psql_session(server: PostgresServer, driver: Path, keep: bool = False) -> tuple[Usage, str]:
    db = _fresh(server)
    usage = measure(server.data_dir, lambda: _psql(server, db, "-f", str(driver)))
    if not keep:
        server.drop_database(db)
    return usage, db


def run_psql_per_file(server: PostgresServer, files: list[tuple[Path, bool]]) -> Usage:
    db = _fresh(server)

    def loop() -> None:
        for path, bare in files:
            _psql(server, db, *(() if bare else ("-1",)), "-f", str(path))

    usage = measure(server.data_dir, loop)
    server.drop_database(db)
    return usage


def run_dbops(server: PostgresServer, source: Path, count: int, keep: bool = False) -> tuple[Usage, str]:
    db = _fresh(server)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"DBOPS_DATABASE_URI": server.uri(db), "PGSSLMODE": "disable",
                "DBOPS_RESULT_PATH": str(source.parent / "result.json")})
    completed: list[subprocess.CompletedProcess[str]] = []
    usage = measure(server.data_dir, lambda: completed.append(subprocess.run(
        [sys.executable, "-m", "dbops.cli.main", "migrate", "apply", "--source", str(source)],
        env=env, capture_output=True, text=True, check=False)))
    if completed[0].returncode != 0:
        raise SystemExit(f"dbops migrate apply failed (exit {completed[0].returncode}): {completed[0].stderr[-2000:]}")
    applied = int(server.psql("SELECT count(*) FROM dbops_migrations WHERE success", db))
    assert applied == count, (applied, count)
    if not keep:
        server.drop_database(db)
    return usage, db


def schema(server: PostgresServer, db: str) -> str:
    env = {**os.environ, **server.env(), "PGSSLMODE": "disable"}
    dump = subprocess.run([str(client_bin_dir() / "pg_dump"), "--schema-only", "--no-owner",
                           "--exclude-table=dbops_migrations", "-d", db], env=env, check=True,
                          capture_output=True, text=True).stdout
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("--", "\\restrict", "\\unrestrict")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--major", type=int, default=18)
    parser.add_argument("--scale", type=int, default=1, help="multiplies the seeded rows (1: 10^4-10^5 per table)")
    parser.add_argument("--per-file", action="store_true", help="also time a `psql -1 -f FILE` per file loop")
    args = parser.parse_args()
    compile_dbops()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dbops-history-") as directory, running_postgres(args.major) as server:
        source, driver, files = write_inputs(Path(directory), args.scale)
        print(f"{len(files)} migrations, {sum(bare for _, bare in files)} without a transaction", flush=True)
        _, psql_db = run_psql_session(server, driver, keep=True)  # warm-up, and the two schemas must agree
        _, dbops_db = run_dbops(server, source, len(files), keep=True)
        if schema(server, psql_db) != schema(server, dbops_db):
            raise SystemExit("the schemas of psql and dbops differ")
        print("warm-up: schemas identical (pg_dump --schema-only)", flush=True)
        for db in (psql_db, dbops_db):
            server.drop_database(db)
        rows: list[tuple[Usage, Usage, Usage | None]] = []
        for number in range(1, args.rounds + 1):  # interleaved, so load and a warmer server hit every tool alike
            if number % 2:  # alternate who goes first, so a load trend within a round favours neither
                session = run_psql_session(server, driver)[0]
                dbops = run_dbops(server, source, len(files))[0]
            else:
                dbops = run_dbops(server, source, len(files))[0]
                session = run_psql_session(server, driver)[0]
            per_file = run_psql_per_file(server, files) if args.per_file else None
            loads.append(os.getloadavg()[0])
            rows.append((session, dbops, per_file))
            shown = f"  psql per file {per_file.wall:.2f} s" if per_file is not None else ""
            print(f"round {number}: psql session {session.wall:.2f} s (CPU {session.client_cpu:.2f} + "
                  f"{session.server_cpu:.2f} s)  dbops {dbops.wall:.2f} s (CPU {dbops.client_cpu:.2f} + "
                  f"{dbops.server_cpu:.2f} s)  ratio {dbops.wall / session.wall:.2f}{shown}  (load {loads[-1]:.1f})",
                  flush=True)
    print(f"PostgreSQL {args.major}, scale {args.scale}, {args.rounds} interleaved rounds,"
          f" load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    print(f"median psql session {statistics.median(r[0].wall for r in rows):.2f} s,"
          f" dbops {statistics.median(r[1].wall for r in rows):.2f} s")
    per_file_ratios = [dbops.wall / per_file.wall for _, dbops, per_file in rows if per_file]
    if per_file_ratios:
        print(f"median ratio dbops / psql per file: {statistics.median(per_file_ratios):.2f}")
    print("median CPU ratio (client + server CPU seconds, what load barely moves):"
          f" {statistics.median(d.cpu / s.cpu for s, d, _ in rows):.2f}")
    print(f"median ratio dbops / psql one session: {statistics.median(d.wall / s.wall for s, d, _ in rows):.2f}")


if __name__ == "__main__":
    main()
