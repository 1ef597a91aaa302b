"""A real MinIO server on 127.0.0.1 with a temporary data directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dbops_testbed.binaries import testbed_bin
from dbops_testbed.ports import free_port


@dataclass
class MinioServer:
    """A running MinIO server owned by the test bed."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    argv: list[str] = field(default_factory=list, repr=False)
    launch_env: dict[str, str] = field(default_factory=dict, repr=False)
    log: IO[bytes] | None = field(default=None, repr=False)

    def kill(self) -> None:
        """SIGKILL the server (fault injection); its data directory stays."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def start(self) -> None:
        """Start the server again on the same port and data directory, and wait until it is ready."""
        self.process = subprocess.Popen(self.argv, env=self.launch_env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        _wait_ready(self.endpoint, self.process)

    def client(self, **config: object):  # type: ignore[no-untyped-def]
        """A boto3 S3 client for this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, **config),  # type: ignore[arg-type]
        )

    def env(self) -> dict[str, str]:
        """AWS environment variables for this server's credentials."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }


@contextlib.contextmanager
def running_minio(access_key: str = "dbops-test", secret_key: str = "dbops-test-secret-key") -> Iterator[MinioServer]:
    """Start MinIO on a free port and stop it afterwards."""
    root = Path(tempfile.mkdtemp(prefix="dbops-minio-"))
    port, console = free_port(), free_port()
    env = {
        **os.environ,
        "MINIO_ROOT_USER": access_key,
        "MINIO_ROOT_PASSWORD": secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
    }
    log = open(root / "log", "wb")  # noqa: SIM115
    argv = [str(testbed_bin() / "minio"), "server", "--quiet", "--address", f"127.0.0.1:{port}",
            "--console-address", f"127.0.0.1:{console}", str(root / "data")]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    server = MinioServer(endpoint=endpoint, access_key=access_key, secret_key=secret_key, process=proc,
                         argv=argv, launch_env=env, log=log)
    try:
        try:
            _wait_ready(endpoint, proc)
        except RuntimeError as error:
            raise RuntimeError(f"{error}: {(root / 'log').read_text(errors='replace')[-2000:]}") from None
        yield server
    finally:
        proc = server.process or proc
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/minio/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("MinIO did not start")
        time.sleep(0.2)
