"""The local demo: the operator in a local cluster (default), or the runner alone (--runner) on a real PostgreSQL."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dbops_testbed.postgres import client_bin_dir, running_postgres

SAMPLE_SCHEMA = """
CREATE TABLE mentorship_mentors (id bigserial PRIMARY KEY, name text NOT NULL, skills jsonb NOT NULL DEFAULT '{}');
CREATE TABLE mentorship_bookings (
    id bigserial PRIMARY KEY,
    mentor_id bigint NOT NULL REFERENCES mentorship_mentors(id),
    starts_at timestamptz NOT NULL,
    notes text
);
INSERT INTO mentorship_mentors (name, skills)
    SELECT 'mentor ' || g, jsonb_build_object('level', g % 5) FROM generate_series(1, 2000) g;
INSERT INTO mentorship_bookings (mentor_id, starts_at, notes)
    SELECT 1 + g % 2000, now() + g * interval '1 hour', repeat('note ', g % 20) FROM generate_series(1, 50000) g;
"""


def _dbops(*args: str, env: dict[str, str]) -> dict[str, object]:
    """Run a dbops runner command, echo its summary and return its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as result_file:
        command = ["dbops", *args, "--result-path", result_file.name]
        print(f"\n$ {' '.join(command[:-2])}", flush=True)
        completed = subprocess.run(command, env=env, check=False)
        result: dict[str, object] = json.loads(Path(result_file.name).read_text() or "{}")
        if completed.returncode != 0:
            raise SystemExit(f"dbops {args[0]} failed with exit code {completed.returncode}: {result.get('message')}")
        return result


def main(argv: list[str] | None = None) -> int:
    """Run the demo and print what each step produced."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runner", action="store_true",
                        help="the runner alone: dbops backup, verify and restore against a local PostgreSQL")
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster running after the operator demo (prints the KUBECONFIG line)")
    parser.add_argument("--timings", type=Path, default=None,
                        help="write the operator demo's phase timings and exit code as JSON (bench/demo_bench.py)")
    parser.add_argument("--major", type=int, default=15, choices=(15, 18), help="PostgreSQL major to run")
    parser.add_argument("--storage", default="./dbops-backups", help="backup storage (default: ./dbops-backups)")
    args = parser.parse_args(argv)
    if not args.runner:
        from dbops_testbed import operator_demo

        try:
            return operator_demo.run(keep=args.keep, timings=args.timings)
        except KeyboardInterrupt:
            print("\ninterrupted: everything the demo started is stopped and removed", file=sys.stderr)
            return 130
    with running_postgres(args.major) as server:
        print(f"PostgreSQL {args.major} on 127.0.0.1:{server.port}; creating the sample database 'mentorhub'")
        server.create_database("mentorhub")
        server.psql(SAMPLE_SCHEMA, "mentorhub")
        env = {**os.environ, **server.env(), "PGDATABASE": "mentorhub", "DBOPS_PG_BIN_DIR": str(client_bin_dir())}
        backup = _dbops("backup", "--name", "demo", "--storage", args.storage, env=env)
        artifact = backup.get("artifact", {})
        assert isinstance(artifact, dict)
        location = str(artifact.get("manifestUri", "")).removesuffix("/manifest.json")
        print(json.dumps(artifact, indent=2))
        _dbops("verify", "--from", location, env=env)
        _dbops("restore", "--from", location, "--dbname", "mentorhub_restored", "--create", env=env)
        counts = [
            server.psql("SELECT count(*) FROM mentorship_bookings", database)
            for database in ("mentorhub", "mentorhub_restored")
        ]
        print(f"\nbookings in mentorhub: {counts[0]}, in mentorhub_restored: {counts[1]}")
        if counts[0] != counts[1]:
            return 1
    if args.storage == "./dbops-backups" and Path("dbops-backups").is_dir() and not os.environ.get("DBOPS_DEMO_KEEP"):
        shutil.rmtree("dbops-backups")
    print("\ndemo finished: backup, verification and restore all succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
