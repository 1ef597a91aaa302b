"""Helpers for the migration tests: run the real ``dbops`` CLI, write file sets, dump schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbops_testbed.postgres import PostgresServer, client_bin_dir

DBOPS = [sys.executable, "-m", "dbops.cli.main"]


def dbops_env(server: PostgresServer, dbname: str, result_path: Path, **extra: str) -> dict[str, str]:
    """Environment for the CLI: the URI in DBOPS_DATABASE_URI (never argv) and the result path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"DBOPS_DATABASE_URI": server.uri(dbname), "DBOPS_RESULT_PATH": str(result_path),
                "PGSSLMODE": "disable"})
    env.update(extra)
    return env


def run_dbops(server: PostgresServer, dbname: str, *args: str, timeout: float = 180,
              env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """Run ``dbops ARGS`` against a database; return (exit code, result JSON, stderr)."""
    with tempfile.TemporaryDirectory(prefix="dbops-result-") as directory:
        result_path = Path(directory) / "result.json"
        completed = subprocess.run(
            [*DBOPS, *args], env={**dbops_env(server, dbname, result_path), **(env or {})},
            capture_output=True, text=True, timeout=timeout,
        )
        document = json.loads(result_path.read_text()) if result_path.exists() else {}
    assert len(json.dumps(document, separators=(",", ":")).encode()) <= 4096
    return completed.returncode, document, completed.stderr


def start_dbops(server: PostgresServer, dbname: str, result_path: Path, *args: str) -> subprocess.Popen[str]:
    """Start ``dbops ARGS`` in the background."""
    return subprocess.Popen([*DBOPS, *args], env=dbops_env(server, dbname, result_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def write_migrations(directory: Path, migrations: Mapping[str, tuple[str, str | None]]) -> Path:
    """Write ``{"0001_name": (up, down)}`` as a file set (replacing earlier files)."""
    directory.mkdir(parents=True, exist_ok=True)
    for label, (up, down) in migrations.items():
        (directory / f"{label}.up.sql").write_text(up)
        if down is not None:
            (directory / f"{label}.down.sql").write_text(down)
    return directory


def schema_dump(server: PostgresServer, dbname: str) -> str:
    """``pg_dump --schema-only`` with a fixed restrict key, so equal schemas give equal text."""
    completed = subprocess.run(
        [str(client_bin_dir() / "pg_dump"), "--schema-only", "--no-owner", "--restrict-key=dbopstest",
         "-d", dbname],
        env={**os.environ, **server.env(), "PGSSLMODE": "disable"}, capture_output=True, text=True, check=True,
    )
    return completed.stdout


def history_rows(server: PostgresServer, dbname: str, table: str = "public.dbops_migrations") -> str:
    """Every history row as text ('' when the table does not exist)."""
    exists = server.psql(f"SELECT to_regclass('{table}') IS NOT NULL", dbname)
    if exists != "t":
        return ""
    return server.psql(f"SELECT * FROM {table} ORDER BY version", dbname)


def table_exists(server: PostgresServer, dbname: str, name: str) -> bool:
    """True when a relation exists."""
    return server.psql(f"SELECT to_regclass('{name}') IS NOT NULL", dbname) == "t"
