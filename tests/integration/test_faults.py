"""R21 fault injection, one run of each fault (bench/faults_bench.py repeats them and reports figures).

MinIO killed mid-upload and mid-download, PostgreSQL restarted mid-dump and mid-restore, the network to the
database cut and restored, a full disk under directory storage, and R2's producer killed mid-stream
(pg_terminate_backend, SIGKILL of pg_dump): each ends correct after the Job-style retries, with nothing
half-written and no orphan manifest in the whole bucket afterwards. The servers are private to this module: the faults would disturb others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration import faults

from dbops_testbed.minio import running_minio
from dbops_testbed.postgres import running_postgres

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[faults.Bed]:
    with running_postgres(18) as server, running_minio() as minio:
        yield faults.prepare(server, minio, tmp_path_factory.mktemp("faults"))


@pytest.mark.parametrize("fault", [name for name in faults.SCENARIOS if name != "disk-full"])
def test_fault_ends_correct_with_nothing_half_written(bed: faults.Bed, fault: str) -> None:
    outcome = faults.run(bed, fault)  # R3: the whole bucket swept afterwards, no orphan manifest
    print(f"{fault}: first exit {outcome.first_code}, recovered in {outcome.recover_seconds:.1f}s; {outcome.detail}")
    assert outcome.correct, outcome


def test_disk_full_directory_storage(bed: faults.Bed, tmp_path: Path) -> None:
    if not faults.can_mount():
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN")
    outcome = faults.disk_full_directory_storage(bed)
    print(f"disk-full: first exit {outcome.first_code}, recovered in {outcome.recover_seconds:.1f}s; {outcome.detail}")
    assert outcome.correct, outcome
