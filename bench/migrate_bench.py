"""P6: 200 small migrations — `dbops migrate apply` vs `psql -f` of the same SQL concatenated.

Run: python bench/migrate_bench.py [--count 200] [--rounds 3] [--major 18]
Prints the timings and, last, the ratio dbops / psql (target ≤ 2.0). Each run uses a fresh database; after one
warm-up run of each, the rounds are interleaved.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testbed"))

from dbops_testbed.postgres import PostgresServer, client_bin_dir, running_postgres


def migration_sql(number: int) -> str:
    """One small migration: a table, an index and a row."""
    return (
        f"CREATE TABLE bench_{number:04d} (id bigint PRIMARY KEY, label text NOT NULL, created_at timestamptz);\n"
        f"CREATE INDEX bench_{number:04d}_label ON bench_{number:04d} (label);\n"
        f"INSERT INTO bench_{number:04d} (id, label) VALUES (1, 'first');\n"
    )


def write_inputs(directory: Path, count: int) -> tuple[Path, Path]:
    source = directory / "migrations"
    source.mkdir()
    for number in range(1, count + 1):
        (source / f"{number:04d}_bench_{number}.up.sql").write_text(migration_sql(number))
    concatenated = directory / "all.sql"
    concatenated.write_text("".join(migration_sql(n) for n in range(1, count + 1)))
    return source, concatenated


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def run_psql(server: PostgresServer, sql_file: Path) -> float:
    db = f"b_{uuid.uuid4().hex[:8]}"
    server.create_database(db)
    env = {**os.environ, **server.env(), "PGSSLMODE": "disable"}
    seconds = timed([str(client_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db,
                     "-f", str(sql_file)], env)
    server.drop_database(db)
    return seconds


def run_dbops(server: PostgresServer, source: Path, *extra: str) -> float:
    db = f"b_{uuid.uuid4().hex[:8]}"
    server.create_database(db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"DBOPS_DATABASE_URI": server.uri(db), "PGSSLMODE": "disable",
                "DBOPS_RESULT_PATH": str(source.parent / "result.json")})
    seconds = timed([sys.executable, "-m", "dbops.cli.main", "migrate", "apply", "--source", str(source), *extra],
                    env)
    count = server.psql("SELECT count(*) FROM dbops_migrations WHERE success", db)
    server.drop_database(db)
    assert int(count) == len(list(source.glob("*.up.sql"))), count
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--major", type=int, default=18)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbops-bench-") as directory, running_postgres(args.major) as server:
        source, concatenated = write_inputs(Path(directory), args.count)
        run_psql(server, concatenated)  # warm-up: the first databases of a fresh server are slower
        run_dbops(server, source)
        timings: dict[str, list[float]] = {"psql": [], "no-lint": [], "default": []}
        for _ in range(args.rounds):  # interleaved, so neither side profits from a warmer server
            timings["psql"].append(run_psql(server, concatenated))
            timings["no-lint"].append(run_dbops(server, source, "--no-lint"))
            timings["default"].append(run_dbops(server, source))
        psql, no_lint, default = (min(timings[k]) for k in ("psql", "no-lint", "default"))
        startup = min(timed([sys.executable, "-m", "dbops.cli.main", "--help"], dict(os.environ))
                      for _ in range(args.rounds))
    print(f"PostgreSQL {args.major}, {args.count} migrations, best of {args.rounds} interleaved rounds (wall clock, incl. start-up)")
    print(f"psql -f concatenated:         {psql:.3f} s")
    print(f"dbops migrate apply --no-lint: {no_lint:.3f} s  (ratio {no_lint / psql:.2f})")
    print(f"dbops migrate apply (lint):    {default:.3f} s")
    print(f"of which CLI start-up (`dbops --help`): {startup:.3f} s;"
          f" ratio without it {(default - startup) / psql:.2f}")
    print(f"ratio dbops/psql: {default / psql:.2f}")


if __name__ == "__main__":
    main()
