"""P6: 200 small migrations — `dbops migrate apply` vs `psql -f` of the same SQL concatenated.

Run: python bench/migrate_bench.py [--count 200] [--rounds 5] [--major 18]
Prints the timings (wall clock and CPU seconds of client and server, see cpu_meter.py) and, last, the median
per-round ratio dbops / psql (target ≤ 1.3). Each run uses a fresh database; after one warm-up run of each, the
rounds are interleaved, alternating who goes first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "testbed"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bytecode import compile_dbops
from cpu_meter import Usage, measure

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


def run_psql(server: PostgresServer, sql_file: Path) -> Usage:
    db = f"b_{uuid.uuid4().hex[:8]}"
    server.create_database(db)
    env = {**os.environ, **server.env(), "PGSSLMODE": "disable"}
    usage = measure(server.data_dir, lambda: timed([str(client_bin_dir() / "psql"), "-X", "-q", "-v",
                                                    "ON_ERROR_STOP=1", "-d", db, "-f", str(sql_file)], env))
    server.drop_database(db)
    return usage


def run_dbops(server: PostgresServer, source: Path, *extra: str) -> Usage:
    db = f"b_{uuid.uuid4().hex[:8]}"
    server.create_database(db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"DBOPS_DATABASE_URI": server.uri(db), "PGSSLMODE": "disable",
                "DBOPS_RESULT_PATH": str(source.parent / "result.json")})
    usage = measure(server.data_dir, lambda: timed(
        [sys.executable, "-m", "dbops.cli.main", "migrate", "apply", "--source", str(source), *extra], env))
    count = server.psql("SELECT count(*) FROM dbops_migrations WHERE success", db)
    server.drop_database(db)
    assert int(count) == len(list(source.glob("*.up.sql"))), count
    return usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--major", type=int, default=18)
    args = parser.parse_args()
    compile_dbops()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dbops-bench-") as directory, running_postgres(args.major) as server:
        source, concatenated = write_inputs(Path(directory), args.count)
        run_psql(server, concatenated)  # warm-up: the first databases of a fresh server are slower
        run_dbops(server, source)
        rounds: list[dict[str, Usage]] = []
        for number in range(args.rounds):  # interleaved, alternating who goes first, so load hits both alike
            order = ["psql", "no-lint", "default"] if number % 2 == 0 else ["default", "no-lint", "psql"]
            measured = {}
            for name in order:
                measured[name] = (run_psql(server, concatenated) if name == "psql"
                                  else run_dbops(server, source, *(("--no-lint",) if name == "no-lint" else ())))
            rounds.append(measured)
            loads.append(os.getloadavg()[0])
            print(f"round {number + 1}: " + "  ".join(
                f"{name} {u.wall:.2f} s (CPU {u.client_cpu:.2f} + {u.server_cpu:.2f} s)" for name, u in measured.items())
                + f"  (load {loads[-1]:.1f})", flush=True)
        startup = statistics.median(timed([sys.executable, "-m", "dbops.cli.main", "--help"], dict(os.environ))
                                    for _ in range(args.rounds))
        apply_help = statistics.median(
            timed([sys.executable, "-m", "dbops.cli.main", "migrate", "apply", "--help"], dict(os.environ))
            for _ in range(args.rounds))

    def median(name: str, field: str = "wall") -> float:
        return statistics.median(getattr(r[name], field) for r in rounds)

    def ratio(name: str, field: str = "wall") -> float:
        return statistics.median(getattr(r[name], field) / getattr(r["psql"], field) for r in rounds)

    print(f"PostgreSQL {args.major}, {args.count} migrations, {args.rounds} interleaved rounds (medians; wall clock"
          f" incl. start-up), load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    print(f"psql -f concatenated:          {median('psql'):.3f} s  CPU {median('psql', 'cpu'):.2f} s")
    print(f"dbops migrate apply --no-lint: {median('no-lint'):.3f} s  CPU {median('no-lint', 'cpu'):.2f} s"
          f"  (ratio {ratio('no-lint'):.2f})")
    print(f"dbops migrate apply (lint):    {median('default'):.3f} s  CPU {median('default', 'cpu'):.2f} s")
    print(f"CLI start-up: `dbops --help` {startup:.3f} s, `dbops migrate apply --help` {apply_help:.3f} s")
    print(f"median CPU ratio (client + server CPU seconds, what load barely moves): {ratio('default', 'cpu'):.2f}")
    print(f"median ratio dbops/psql: {ratio('default'):.2f}")


if __name__ == "__main__":
    main()
