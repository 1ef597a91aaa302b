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
from dataclasses import dataclass
from pathlib import Path

from dbops_testbed.binaries import testbed_bin
from dbops_testbed.ports import free_port


@dataclass
class MinioServer:
    """A running MinIO server owned by the test bed."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

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
    proc = subprocess.Popen(
        [str(testbed_bin() / "minio"), "server", "--quiet", "--address", f"127.0.0.1:{port}",
         "--console-address", f"127.0.0.1:{console}", str(root / "data")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/minio/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"MinIO did not start: {(root / 'log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        yield MinioServer(endpoint=endpoint, access_key=access_key, secret_key=secret_key)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
