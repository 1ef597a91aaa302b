"""Locate (building once, cached outside the repository) the test bed's Go binaries."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent.parent / "build.sh"


@functools.cache
def testbed_bin() -> Path:
    """Directory holding etcd, kube-apiserver, kube-controller-manager, kubectl and minio."""
    override = os.environ.get("DBOPS_TESTBED_BIN")
    if override:
        return Path(override)
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(result.stdout.strip().splitlines()[-1])


HELM_BUILD_SCRIPT = BUILD_SCRIPT.parent / "build-helm.sh"


@functools.cache
def helm_bin() -> Path:
    """The Helm binary (pinned in testbed/helm/go.mod, built once, cached beside the other binaries)."""
    override = os.environ.get("DBOPS_HELM")
    if override:
        return Path(override)
    result = subprocess.run(["bash", str(HELM_BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(result.stdout.strip().splitlines()[-1]) / "helm"
