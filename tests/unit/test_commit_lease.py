"""The commit lease of a backup folder on directory storage: exclusive, renewed, released by its holder, stale taken over."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest

from dbops import errors
from dbops.runner import lease, storage

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)


def _store(tmp_path: Path) -> storage.Storage:
    return storage.open_storage(storage.parse_location(str(tmp_path / "ns" / "db" / "b1")))


def _write_lease(store: storage.Storage, run_id: str, age: datetime.timedelta, ttl: float | None = None) -> None:
    acquired = datetime.datetime.now(datetime.UTC) - age
    document: dict[str, object] = {"runId": run_id, "acquiredAt": acquired.isoformat()}
    if ttl is not None:
        document.update(renewedAt=acquired.isoformat(), ttlSeconds=ttl, pod="backup-x-abcde", host="node-7")
    store.put_bytes(lease.LEASE_KEY, json.dumps(document).encode())


def _holder_run_id(store: storage.Storage) -> str:
    return str(json.loads(store.get_bytes(lease.LEASE_KEY))["runId"])


def _renewing(renewed_ago: float, ttl: float | None = 180.0) -> lease.Holder:
    renewed = NOW - datetime.timedelta(seconds=renewed_ago)
    return lease.Holder(run_id="r", acquired_at=NOW - datetime.timedelta(hours=5), renewed_at=renewed, ttl=ttl)


# --- pure decisions -------------------------------------------------------------------------------------------

def test_a_lease_is_stale_only_once_its_last_renewal_is_older_than_the_ttl() -> None:
    assert not lease.is_stale(_renewing(179), NOW, ttl=180, legacy_after=86400)
    assert lease.is_stale(_renewing(181), NOW, ttl=180, legacy_after=86400)
    # acquired five hours ago but renewed a second ago: a live long upload
    assert not lease.is_stale(_renewing(1), NOW, ttl=180, legacy_after=86400)


def test_a_holder_with_a_longer_ttl_is_judged_by_its_own_ttl() -> None:
    assert not lease.is_stale(_renewing(500, ttl=600), NOW, ttl=180, legacy_after=86400)
    assert lease.is_stale(_renewing(601, ttl=600), NOW, ttl=180, legacy_after=86400)
    assert lease.stale_bound(_renewing(0, ttl=60), ttl=180, legacy_after=86400) == 180


def test_a_lease_of_a_runner_that_never_renews_keeps_the_legacy_bound() -> None:
    legacy = lease.Holder.parse({"runId": "old", "acquiredAt": (NOW - datetime.timedelta(hours=2)).isoformat()})
    assert legacy.ttl is None
    assert not lease.is_stale(legacy, NOW, ttl=180, legacy_after=24 * 3600)
    assert lease.is_stale(legacy, NOW, ttl=180, legacy_after=3600)
    assert not lease.is_stale(legacy, NOW, ttl=180, legacy_after=0)  # 0: never


def test_an_unreadable_lease_is_stale_and_naive_times_are_utc() -> None:
    assert lease.is_stale(lease.Holder.parse({"acquiredAt": "yesterday"}), NOW, ttl=180, legacy_after=86400)
    naive = lease.Holder.parse({"renewedAt": "2026-11-30T11:59:00", "ttlSeconds": 180})
    assert naive.renewed_at == NOW - datetime.timedelta(minutes=1)
    assert lease.Holder.parse({"ttlSeconds": True}).ttl is None


@pytest.mark.parametrize(("renewed_ago", "waited", "renewal_seen", "expected"), [
    (181, 0, False, lease.Verdict.TAKE_OVER),
    (10, 0, False, lease.Verdict.WAIT),
    (10, 121, True, lease.Verdict.GIVE_UP),     # live (seen renewing) after the wait
    (10, 121, False, lease.Verdict.WAIT),       # not seen renewing yet: wait for it to go stale
    (10, 121 + 180, False, lease.Verdict.GIVE_UP),  # the hard cap (a holder whose clock runs ahead)
    (-600, 400, False, lease.Verdict.GIVE_UP),
])
def test_decide(renewed_ago: float, waited: float, renewal_seen: bool, expected: lease.Verdict) -> None:
    verdict = lease.decide(_renewing(renewed_ago), NOW, ttl=180, legacy_after=86400, waited=waited, wait=120,
                           renewal_seen=renewal_seen)
    assert verdict is expected


def test_a_live_legacy_lease_is_given_up_on_after_the_wait() -> None:
    legacy = lease.Holder.parse({"runId": "old", "acquiredAt": NOW.isoformat()})
    assert lease.decide(legacy, NOW, ttl=180, legacy_after=86400, waited=121, wait=120,
                        renewal_seen=False) is lease.Verdict.GIVE_UP


def test_the_holder_description_names_pod_host_and_times() -> None:
    holder = lease.Holder.parse({"runId": "abc", "pod": "nightly-backup-x7k2p", "host": "node-3", "pid": 7,
                                 "acquiredAt": "2026-11-30T10:00:00+00:00", "renewedAt": "2026-11-30T10:05:00+00:00",
                                 "ttlSeconds": 180})
    text = holder.describe()
    assert "abc" in text and "nightly-backup-x7k2p" in text and "node-3" in text and "pid 7" in text
    assert "started 2026-11-30T10:00:00+00:00" in text and "last renewed 2026-11-30T10:05:00+00:00" in text
    assert lease.Holder.parse(json.loads(holder.to_json())) == holder


def test_the_holder_is_the_pod_the_downward_api_names_not_its_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    # a Job pod's hostname is not always its name (spec.hostname, a name cut to 63 characters): every dbops Job
    # sets DBOPS_POD_NAME and DBOPS_NAMESPACE from the downward API, so a takeover names the killed pod exactly
    monkeypatch.setenv("HOSTNAME", "runner")
    monkeypatch.setenv("DBOPS_POD_NAME", "nightly-20261130-0200-backup-5f2c1a9e-x7k2p")
    monkeypatch.setenv("DBOPS_NAMESPACE", "shop")
    holder = lease.Holder.this_run(180, NOW, "run-1")
    assert "pod shop/nightly-20261130-0200-backup-5f2c1a9e-x7k2p," in holder.describe()
    assert lease.Holder.parse(json.loads(holder.to_json())) == holder
    monkeypatch.delenv("DBOPS_POD_NAME")
    monkeypatch.delenv("DBOPS_NAMESPACE")
    assert lease.Holder.this_run(180, NOW, "run-1").pod == "runner"  # outside a dbops Job: the hostname


# --- on directory storage --------------------------------------------------------------------------------------

def test_a_live_lease_keeps_a_second_run_out_until_its_holder_releases_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    first = lease.acquire(store, ttl=2, wait=0)
    with pytest.raises(errors.TransientError) as raised:
        lease.acquire(store, ttl=2, wait=0)  # given up on once seen renewing (every ttl/3)
    assert raised.value.reason == "ConcurrentRun"
    assert store.location.uri() in str(raised.value) and first.run_id in str(raised.value)
    first.release()
    assert not store.exists(lease.LEASE_KEY)
    second = lease.acquire(store, ttl=3600, wait=0)
    assert _holder_run_id(store) == second.run_id
    second.release()


def test_only_the_holder_deletes_the_lease(tmp_path: Path) -> None:
    store = _store(tmp_path)
    held = lease.acquire(store, ttl=3600, wait=0)
    _write_lease(store, "a-taker", datetime.timedelta(0), ttl=60)  # taken over meanwhile
    held.release()
    assert _holder_run_id(store) == "a-taker"
    with pytest.raises(errors.TransientError) as raised:
        held.check()
    assert raised.value.reason == "ConcurrentRun" and "a-taker" in str(raised.value)


def test_a_stale_legacy_lease_is_taken_over_and_a_fresh_one_is_not(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write_lease(store, "killed-run", datetime.timedelta(hours=25))
    taken = lease.acquire(store, ttl=180, wait=0, legacy_after=24 * 3600)
    assert _holder_run_id(store) == taken.run_id
    assert taken.took_over is not None and taken.took_over.run_id == "killed-run"
    taken.release()
    _write_lease(store, "live-run", datetime.timedelta(hours=23))
    with pytest.raises(errors.TransientError):
        lease.acquire(store, ttl=180, wait=0, legacy_after=24 * 3600)
    assert _holder_run_id(store) == "live-run"
    assert sorted(store.list_keys()) == [lease.LEASE_KEY]  # nothing left aside


def test_a_renewing_lease_that_stopped_renewing_is_taken_over_after_its_ttl(tmp_path: Path) -> None:
    store = _store(tmp_path)
    written = datetime.datetime.now(datetime.UTC)
    _write_lease(store, "killed-run", datetime.timedelta(0), ttl=2)
    started = time.monotonic()
    taken = lease.acquire(store, ttl=2, wait=0)
    # waited for it to go stale (never given up on: it was not seen renewing), and not much longer
    assert (datetime.datetime.now(datetime.UTC) - written).total_seconds() >= 2
    assert time.monotonic() - started < 10
    assert taken.took_over is not None and taken.took_over.pod == "backup-x-abcde"
    taken.release()
    assert not store.exists(lease.LEASE_KEY)


def test_the_holder_renews_so_a_short_ttl_never_expires_under_it(tmp_path: Path) -> None:
    store = _store(tmp_path)
    # ttl 4 s (renewed every ~1.3 s): a 1.5 s ttl lost its lease when a loaded CI box (load 25) starved the
    # renewal thread for more than the ttl, which is the test bed's CPU, not the lease's logic.
    held = lease.acquire(store, ttl=4, wait=0)
    first = json.loads(store.get_bytes(lease.LEASE_KEY))
    with pytest.raises(errors.TransientError) as raised:
        lease.acquire(store, ttl=4, wait=9)  # 9 s > 2 × ttl: it would have been stale without renewals
    assert raised.value.reason == "ConcurrentRun" and held.run_id in str(raised.value)
    last = json.loads(store.get_bytes(lease.LEASE_KEY))
    assert last["runId"] == held.run_id and last["acquiredAt"] == first["acquiredAt"]
    assert last["renewedAt"] > first["renewedAt"]
    held.check()
    held.release()
    assert not store.exists(lease.LEASE_KEY)


def test_a_takeover_of_a_lease_that_changed_since_it_was_judged_stale_fails(tmp_path: Path) -> None:
    store = _store(tmp_path)
    _write_lease(store, "killed-run", datetime.timedelta(hours=25))
    judged = store.version(lease.LEASE_KEY)
    assert judged is not None
    _write_lease(store, "another-taker", datetime.timedelta(0))  # won the takeover first
    with pytest.raises(errors.DbopsError) as raised:
        store.put_bytes(lease.LEASE_KEY, b"{}", if_version=judged)
    assert raised.value.reason == "AlreadyExists"
    assert _holder_run_id(store) == "another-taker"
    assert sorted(store.list_keys()) == [lease.LEASE_KEY]


def test_a_conditional_delete_leaves_a_changed_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    version = store.put_bytes(lease.LEASE_KEY, b"mine", exclusive=True)
    assert version == store.version(lease.LEASE_KEY)
    store.put_bytes(lease.LEASE_KEY, b"theirs")
    store.delete_if(lease.LEASE_KEY, version)
    assert store.get_bytes(lease.LEASE_KEY) == b"theirs"
    store.delete_if(lease.LEASE_KEY, str(store.version(lease.LEASE_KEY)))
    assert not Path(store.location.path).exists()  # the folder left empty is removed too


def test_a_lease_rewritten_with_the_holders_own_run_id_stays_held(tmp_path: Path) -> None:
    # A retried PUT whose first attempt landed fails its condition against our own write: not a takeover.
    store = _store(tmp_path)
    held = lease.acquire(store, ttl=3600, wait=0)
    store.put_bytes(lease.LEASE_KEY, store.get_bytes(lease.LEASE_KEY))  # a new version with our run id
    assert held.renew()
    held.check()
    assert held.lost is None and held.version == store.version(lease.LEASE_KEY)
    held.release()
    assert not store.exists(lease.LEASE_KEY)
