"""Restores refuse corrupt artifacts and unconfirmed overwrites, stop at the first error, and leave the target alone."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration import datasets
from tests.integration.runner_cli import run_dbops, runner_env

from dbops_testbed.postgres import PostgresServer


@pytest.fixture
def target(pg_server: PostgresServer) -> Iterator[str]:
    """A non-empty database that restores must not damage when they refuse."""
    name = "restore_target"
    pg_server.drop_database(name)
    pg_server.create_database(name)
    pg_server.psql("CREATE TABLE keep_me (id int PRIMARY KEY, v text); "
                   "INSERT INTO keep_me SELECT g, 'row ' || g FROM generate_series(1, 50) g", name)
    yield name
    pg_server.drop_database(name)


def _snapshot(server: PostgresServer, dbname: str) -> tuple[str, dict[str, str]]:
    return datasets.schema_dump(server, dbname), datasets.table_checksums(server, dbname)


def _backup(server: PostgresServer, source: str, tmp_path: Path, *args: str) -> Path:
    run = run_dbops(["backup", "--dbname", source, "--storage", str(tmp_path / "store"), "--name", "b", *args],
                    runner_env(server), tmp_path)
    assert run.code == 0, run.stderr
    return tmp_path / "store" / "local" / source / "b"


def _rewrite_manifest_to_match(folder: Path, dump: Path) -> None:
    """Make the manifest agree with a damaged object: only decoding can catch it now."""
    manifest = json.loads((folder / "manifest.json").read_text())
    data = dump.read_bytes()
    manifest["objects"][0].update(sizeBytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _truncate(dump: Path) -> None:
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) * 2 // 3])


def _flip_byte(dump: Path) -> None:
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))


# manifest_agrees: the manifest is rewritten to match the damaged object, so only decoding can catch it
# (a flipped byte inside uncompressed row data decodes fine: that case is left to the checksum).
DAMAGE_CASES = [
    pytest.param(damage, agrees, codec, id=f"{codec}-{'decode' if agrees else 'checksum'}-{damage.__name__[1:]}")
    for codec in ("zstd", "none")
    for agrees in (False, True)
    for damage in (_truncate, _flip_byte)
    if not (agrees and codec == "none" and damage is _flip_byte)
]


@pytest.mark.parametrize(("damage", "manifest_agrees", "codec"), DAMAGE_CASES)
def test_damaged_dump_is_refused_by_verify_and_restore_and_the_target_is_untouched(
    database: tuple[PostgresServer, str], target: str, tmp_path: Path, damage: object, manifest_agrees: bool,
    codec: str,
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=200, bookings=3000, events=500)
    folder = _backup(server, source, tmp_path, "--compression", codec)
    dump = folder / ("dump.zst" if codec == "zstd" else "dump")
    damage(dump)  # type: ignore[operator]
    if manifest_agrees:
        _rewrite_manifest_to_match(folder, dump)
    env = runner_env(server)
    before = _snapshot(server, target)

    verify = run_dbops(["verify", "--from", str(folder)], env, tmp_path)
    assert verify.code == 1, verify.stderr
    assert verify.result["reason"] in ("ChecksumMismatch", "DecodeFailed", "VerificationFailed")

    restore = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--confirm-overwrite", target],
                        env, tmp_path)
    assert restore.code in (1, 2), restore.stderr
    assert restore.result["ok"] is False
    if not manifest_agrees:
        assert restore.result["reason"] == "ChecksumMismatch"
    assert _snapshot(server, target) == before


def test_restore_over_a_non_empty_database_needs_its_name_as_confirmation(
    database: tuple[PostgresServer, str], target: str, tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=30, bookings=60, events=10)
    folder = _backup(server, source, tmp_path)
    env = runner_env(server)
    before = _snapshot(server, target)
    for confirm in ([], ["--confirm-overwrite", "some_other_db"]):
        run = run_dbops(["restore", "--from", str(folder), "--dbname", target, *confirm], env, tmp_path)
        assert run.code == 2
        assert run.result["reason"] == "OverwriteNotConfirmed"
        assert f"--confirm-overwrite {target}" in run.result["message"]
        assert _snapshot(server, target) == before
    run = run_dbops(["restore", "--from", str(folder), "--dbname", target, "--confirm-overwrite", target,
                     "--terminate-connections"], env, tmp_path)
    assert run.code == 0, run.stderr
    assert datasets.table_checksums(server, target)["app.users"] == datasets.table_checksums(server, source)["app.users"]


def test_restore_stops_at_the_first_error_and_reports_it(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, source = database
    datasets.create_dataset(server, source, users=30, bookings=60, events=10)
    folder = _backup(server, source, tmp_path)
    empty = f"{source}_empty"
    server.create_database(empty)
    try:
        run = run_dbops(["restore", "--from", str(folder), "--dbname", empty, "--mode", "data-only"],
                        runner_env(server), tmp_path)
        assert run.code == 2
        assert run.result["reason"] == "RestoreFailed"
        assert "restore stopped at the first error" in run.result["message"]
        assert "does not exist" in run.result["message"]
    finally:
        server.drop_database(empty)


def test_restore_into_a_missing_database_without_create_is_refused(
    database: tuple[PostgresServer, str], tmp_path: Path
) -> None:
    server, source = database
    server.psql("CREATE TABLE t (id int)", source)
    folder = _backup(server, source, tmp_path)
    run = run_dbops(["restore", "--from", str(folder), "--dbname", "nowhere_db"], runner_env(server), tmp_path)
    assert run.code == 2
    assert run.result["reason"] == "NotFound"
    assert 'database "nowhere_db" does not exist' in run.result["message"]
