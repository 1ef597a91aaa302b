"""The commit lease of a backup folder on directory storage: exclusive, released by its holder, stale taken over."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from dbops import errors
from dbops.runner import lease, storage


def _store(tmp_path: Path) -> storage.Storage:
    return storage.open_storage(storage.parse_location(str(tmp_path / "ns" / "db" / "b1")))


def _write_lease(store: storage.Storage, run_id: str, age: datetime.timedelta) -> None:
    acquired = datetime.datetime.now(datetime.UTC) - age
    store.put_bytes(lease.LEASE_KEY, json.dumps({"runId": run_id, "acquiredAt": acquired.isoformat()}).encode())


def test_a_live_lease_keeps_a_second_run_out_until_its_holder_releases_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = lease.acquire(store, stale_after=3600, wait=0)
    with pytest.raises(errors.TransientError) as raised:
        lease.acquire(store, stale_after=3600, wait=0)
    assert raised.value.reason == "ConcurrentRun"
    assert store.location.uri() in str(raised.value) and first.run_id in str(raised.value)
    first.release()
    assert not store.exists(lease.LEASE_KEY)
    second = lease.acquire(store, stale_after=3600, wait=0)
    assert json.loads(store.get_bytes(lease.LEASE_KEY))["runId"] == second.run_id


def test_only_the_holder_deletes_the_lease(tmp_path: Path) -> None:
    store = _store(tmp_path)
    held = lease.acquire(store, stale_after=3600, wait=0)
    _write_lease(store, "a-taker", datetime.timedelta(0))  # taken over meanwhile
    held.release()
    assert json.loads(store.get_bytes(lease.LEASE_KEY))["runId"] == "a-taker"


def test_a_stale_lease_is_taken_over_and_a_fresh_one_is_not(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write_lease(store, "killed-run", datetime.timedelta(hours=25))
    taken = lease.acquire(store, stale_after=24 * 3600, wait=0)
    assert json.loads(store.get_bytes(lease.LEASE_KEY))["runId"] == taken.run_id
    taken.release()
    _write_lease(store, "live-run", datetime.timedelta(hours=23))
    with pytest.raises(errors.TransientError):
        lease.acquire(store, stale_after=24 * 3600, wait=0)
    assert json.loads(store.get_bytes(lease.LEASE_KEY))["runId"] == "live-run"
    assert sorted(store.list_keys()) == [lease.LEASE_KEY]  # nothing left aside


def test_a_takeover_of_a_lease_that_changed_since_it_was_judged_stale_fails(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write_lease(store, "killed-run", datetime.timedelta(hours=25))
    judged = store.version(lease.LEASE_KEY)
    assert judged is not None
    _write_lease(store, "another-taker", datetime.timedelta(0))  # won the takeover first
    with pytest.raises(errors.DbopsError) as raised:
        store.put_bytes(lease.LEASE_KEY, b"{}", if_version=judged)
    assert raised.value.reason == "AlreadyExists"
    assert json.loads(store.get_bytes(lease.LEASE_KEY))["runId"] == "another-taker"
    assert sorted(store.list_keys()) == [lease.LEASE_KEY]
