"""Running the ``dbops`` runner commands as real processes, as a Job would."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from dbops_testbed.postgres import PostgresServer, client_bin_dir

DEBIAN_15_BIN = "/usr/lib/postgresql/15/bin"
_STRIPPED = ("PG", "AWS_", "DBOPS_")


@dataclasses.dataclass
class Run:
    """One finished command: exit code, output and the JSON result."""

    code: int
    stdout: str
    stderr: str
    result: dict[str, Any]

    @property
    def output(self) -> str:
        """Everything the process printed, plus its result document."""
        return self.stdout + self.stderr + json.dumps(self.result)


def tools_path(*, newest_only: bool = False) -> str:
    """``DBOPS_PG_BIN_DIR``: PostgreSQL 18 tools and, unless ``newest_only``, Debian's 15."""
    return str(client_bin_dir()) if newest_only else f"{client_bin_dir()}{os.pathsep}{DEBIAN_15_BIN}"


def runner_env(server: PostgresServer | None = None, **extra: str) -> dict[str, str]:
    """A clean environment with the server's libpq variables and the test tools."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED)}
    if server is not None:
        env.update(server.env())
    env["DBOPS_PG_BIN_DIR"] = tools_path()
    env.update(extra)
    return env


def popen_dbops(args: list[str], env: dict[str, str], result_path: Path) -> subprocess.Popen[str]:
    """Start ``dbops ARGS --result-path PATH`` without waiting."""
    return subprocess.Popen(
        [sys.executable, "-m", "dbops.cli.main", *args, "--result-path", str(result_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def run_dbops(args: list[str], env: dict[str, str], workdir: Path, timeout: float = 600) -> Run:
    """Run ``dbops ARGS`` to completion and collect exit code, output and result."""
    result_path = workdir / f"result-{uuid.uuid4().hex[:8]}.json"
    process = popen_dbops(args, env, result_path)
    stdout, stderr = process.communicate(timeout=timeout)
    return finished(process, stdout, stderr, result_path)


def finished(process: subprocess.Popen[str], stdout: str, stderr: str, result_path: Path) -> Run:
    """A Run from a completed process."""
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    return Run(code=process.returncode, stdout=stdout, stderr=stderr, result=result)
