"""The commit lease of one backup folder: one holder commits at a time, renewed while it works, taken over once stale.

S3 has no condition across objects, so "no manifest yet, now overwrite the dump" can destroy
the dump of a run that committed in between. Runs of one backup therefore commit one at a time:
the lease object is created exclusively (``If-None-Match: *`` / hard link). Its holder renews it
every ``ttl/3`` by compare-and-swap (``If-Match: <ETag>`` / rename aside and compare the inode), so
a short ``ttl`` never expires under a live upload of any length; a lease not renewed for ``ttl`` is
stale (its holder was killed) and is taken over by the same compare-and-swap, so of two takers one
wins. A holder whose renewal fails its condition has lost the lease and commits nothing more. Release
renews once more (proving the lease is still ours) and deletes with ``If-Match`` (see :meth:`Lease.release`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import enum
import json
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from dbops import errors
from dbops.api.durations import parse_duration
from dbops.runner import storage

LEASE_KEY = ".dbops-lock"
DEFAULT_TTL = "3m"
DEFAULT_WAIT = "2m"
MIN_TTL = 1.0
POLL_SECONDS = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--commit-lease-ttl`` and ``--commit-lease-wait``."""
    group = parser.add_argument_group("commit lease", "one run of a backup commits at a time (.dbops-lock)")
    group.add_argument(
        "--commit-lease-ttl", default=DEFAULT_TTL, metavar="DURATION",
        help="the holder renews the backup folder's commit lease every third of this; a lease not renewed "
        f"for this long (its runner was killed) is taken over (default {DEFAULT_TTL})",
    )
    group.add_argument(
        "--commit-lease-wait", default=DEFAULT_WAIT, metavar="DURATION",
        help="how long to wait for a live holder (one that renews) before failing ConcurrentRun; a holder "
        f"that stopped renewing is waited for until it is stale (default {DEFAULT_WAIT})",
    )


def _seconds(flag: str, text: str, minimum: float) -> float:
    try:
        value = parse_duration(str(text).strip())
    except ValueError as error:
        raise errors.InvalidSpecError(f"{flag}: {error}") from None
    if value < minimum:
        raise errors.InvalidSpecError(f"{flag} must be at least {minimum:g}s, not {text!r}")
    return value


def settings_from_args(args: argparse.Namespace) -> tuple[float, float]:
    """Seconds of ``--commit-lease-ttl`` and ``--commit-lease-wait``."""
    return (_seconds("--commit-lease-ttl", args.commit_lease_ttl, MIN_TTL),
            _seconds("--commit-lease-wait", args.commit_lease_wait, 0.0))


def _time(value: object) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Holder:
    """What a lease object says about the run that holds it."""

    run_id: str = ""
    pod: str = ""
    namespace: str = ""
    host: str = ""
    pid: int = 0
    acquired_at: datetime.datetime | None = None
    renewed_at: datetime.datetime | None = None
    ttl: float | None = None
    """Seconds; None for a lease of a runner that never renews it (judged by the legacy bound)."""

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Holder:
        """Read a lease document (unreadable fields become empty)."""
        ttl = data.get("ttlSeconds")
        pid = data.get("pid")
        return cls(
            run_id=str(data.get("runId") or ""), pod=str(data.get("pod") or ""),
            namespace=str(data.get("namespace") or ""), host=str(data.get("host") or ""),
            pid=pid if isinstance(pid, int) else 0, acquired_at=_time(data.get("acquiredAt")),
            renewed_at=_time(data.get("renewedAt")),
            ttl=float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) else None,
        )

    @classmethod
    def this_run(cls, ttl: float, now: datetime.datetime, run_id: str) -> Holder:
        """The holder document of this process: the pod's name and namespace from the downward API (every dbops
        Job sets ``$DBOPS_POD_NAME`` and ``$DBOPS_NAMESPACE``), else ``$HOSTNAME`` (outside a dbops Job)."""
        host = socket.gethostname()
        return cls(run_id=run_id, pod=os.environ.get("DBOPS_POD_NAME") or os.environ.get("HOSTNAME") or host,
                   namespace=os.environ.get("DBOPS_NAMESPACE") or "", host=host, pid=os.getpid(), acquired_at=now,
                   renewed_at=now, ttl=ttl)

    def to_json(self) -> bytes:
        """The lease document."""
        return json.dumps(self.to_wire()).encode()

    def to_wire(self) -> dict[str, Any]:
        """The lease document as a dict (also what a result reports about a holder)."""
        return {
            "runId": self.run_id, "pod": self.pod, "namespace": self.namespace, "host": self.host, "pid": self.pid,
            "acquiredAt": self.acquired_at.isoformat() if self.acquired_at else None,
            "renewedAt": self.renewed_at.isoformat() if self.renewed_at else None, "ttlSeconds": self.ttl,
        }

    def describe(self) -> str:
        """``run <id> (pod ns/p, host h, pid n), started <t>, last renewed <t>`` for messages."""
        pod = f"{self.namespace}/{self.pod}" if self.namespace and self.pod else self.pod
        who = ", ".join(f"{k} {v}" for k, v in (("pod", pod), ("host", self.host), ("pid", self.pid)) if v)
        started = self.acquired_at.isoformat(timespec="seconds") if self.acquired_at else "at an unknown time"
        renewed = (f", last renewed {self.renewed_at.isoformat(timespec='seconds')}"
                   if self.renewed_at and self.ttl is not None else ", never renewed")
        return f"run {self.run_id or '(unknown)'} ({who or 'unknown holder'}), started {started}{renewed}"


def stale_bound(holder: Holder, ttl: float, legacy_after: float) -> float:
    """Seconds without renewal after which ``holder``'s lease is stale (0: never).

    The longer of our ttl and the holder's own: a holder renewing for a longer ttl is never cut
    short. A lease of a runner that never renews (no ``ttlSeconds``) keeps the legacy bound.
    """
    if holder.ttl is None:
        return legacy_after
    return max(ttl, holder.ttl)


def is_stale(holder: Holder, now: datetime.datetime, ttl: float, legacy_after: float) -> bool:
    """Whether the lease was last renewed (or taken) longer than its stale bound ago; unreadable is stale."""
    bound = stale_bound(holder, ttl, legacy_after)
    if bound <= 0:
        return False
    last = holder.renewed_at or holder.acquired_at
    if last is None:
        return True  # unreadable: taken over only if unchanged since it was read
    return (now - last).total_seconds() > bound


class Verdict(enum.Enum):
    """What a run that found another run's lease does next."""

    TAKE_OVER = "take over"
    WAIT = "wait"
    GIVE_UP = "give up"


def decide(holder: Holder, now: datetime.datetime, *, ttl: float, legacy_after: float, waited: float,
           wait: float, renewal_seen: bool) -> Verdict:
    """Take over a stale lease; give up on a live one after ``wait`` s.

    A holder is only known to be live once it was seen renewing (or never renews: a legacy lease).
    Until then the run keeps waiting for the lease to go stale, at most ``wait`` plus the stale
    bound (the bound for a holder whose clock runs ahead).
    """
    if is_stale(holder, now, ttl, legacy_after):
        return Verdict.TAKE_OVER
    if waited >= wait and (renewal_seen or holder.ttl is None):
        return Verdict.GIVE_UP
    if waited >= wait + stale_bound(holder, ttl, legacy_after):
        return Verdict.GIVE_UP
    return Verdict.WAIT


def _read(store: storage.Storage) -> tuple[str, Holder] | None:
    """The lease's version and holder (None when there is no lease)."""
    version = store.version(LEASE_KEY)
    if version is None:
        return None
    try:
        data = json.loads(store.get_bytes(LEASE_KEY))
    except errors.NotFoundError:
        return None
    except ValueError:
        data = {}
    return version, Holder.parse(data if isinstance(data, dict) else {})


class Lease:
    """A held commit lease, renewed by a background thread until released."""

    def __init__(self, store: storage.Storage, holder: Holder, version: str, ttl: float,
                 took_over: Holder | None = None) -> None:
        self.store = store
        self.holder = holder
        self.version = version
        self.ttl = ttl
        self.took_over = took_over
        """The stale holder this run took the lease over from, if any."""
        self.lost: str | None = None
        self._renewed = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renewal", daemon=True)
        self._thread.start()

    @property
    def run_id(self) -> str:
        """This run's id in the lease document."""
        return self.holder.run_id

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Rewrite the lease with a new renewal time if it is still ours; False once it is lost."""
        with self._lock:
            return self._renew_locked()

    def _renew_locked(self) -> bool:
        if self.lost is not None:
            return False
        sent = time.monotonic()
        holder = dataclasses.replace(self.holder, renewed_at=datetime.datetime.now(datetime.UTC))
        try:
            version = self.store.put_bytes(LEASE_KEY, holder.to_json(), if_version=self.version)
        except errors.DbopsError as error:
            if error.reason != "AlreadyExists":
                print(f"could not renew the commit lease {self.store.location.uri(LEASE_KEY)} (tried again): "
                      f"{error}", file=sys.stderr, flush=True)
                return True
            if not self._lose():
                return False
            version = self.version  # our own write: a retried request whose first attempt landed
        self.holder, self.version, self._renewed = holder, version, sent
        return True

    def _lose(self) -> bool:
        """Mark the lease lost unless the object is still one this run wrote (then adopt its version)."""
        current = _read(self.store)
        if current is not None and current[1].run_id == self.run_id:
            self.version = current[0]
            return True
        self.lost = (f"{self.store.location.uri(LEASE_KEY)} was taken over by "
                     f"{current[1].describe() if current else 'another run (and released)'}")
        print(f"lost the commit lease: {self.lost}", file=sys.stderr, flush=True)
        return False

    def holds(self) -> bool:
        """Whether the lease object is still the one this run last wrote and was renewed in time (renewing
        first when due): only then may this run commit or withdraw objects."""
        with self._lock:
            if self.lost is None and time.monotonic() - self._renewed > self.ttl / 3:
                self._renew_locked()
            if self.lost is None and self.store.version(LEASE_KEY) != self.version:
                self._lose()  # (after a failed renewal too: taken over, or only the store hiccuped?)
            return self.lost is None and time.monotonic() - self._renewed <= self.ttl * 2 / 3

    def check(self) -> None:
        """Raise ConcurrentRun unless this run still holds the lease with time to spare (commit only then)."""
        held = self.holds()
        if self.lost is None and time.monotonic() - self._renewed > self.ttl * 2 / 3:
            # Paused between (or inside) the looks: taken over meanwhile, or only slow? Look again, so that a
            # takeover is named as such.
            held = self.holds()
        if not held and self.lost is not None:
            raise errors.TransientError(
                f"backup {self.store.location.uri()}: this run lost its commit lease (it was not renewed for "
                f"{self.ttl:g} s, e.g. the runner was paused): {self.lost}; nothing more is committed",
                reason="ConcurrentRun",
            )
        silent = time.monotonic() - self._renewed
        if silent > self.ttl * 2 / 3:
            raise errors.TransientError(
                f"backup {self.store.location.uri()}: the commit lease could not be renewed for {silent:.0f} s "
                f"(ttl {self.ttl:g} s); another run may take it over, so nothing more is committed",
                reason="ConcurrentRun",
            )

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours.

        The last renewal proves by compare-and-swap that the lease is ours and fresh; the delete
        then carries ``If-Match`` with its version. Stores that honour it (AWS S3; directory
        storage by rename and inode check) never delete another run's lease. MinIO ignores
        ``If-Match`` on DeleteObject: there the delete follows a renewal that was just confirmed,
        so another run could only hold the lease if this process stalled for a whole ttl between
        the two requests; the delete is skipped when more than ``ttl/3`` passed (the lease then
        simply goes stale).
        """
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if not self._renew_locked():
                return
            if time.monotonic() - self._renewed > self.ttl / 3:
                print(f"left the commit lease {self.store.location.uri(LEASE_KEY)} to go stale: too slow to "
                      "release it safely", file=sys.stderr)
                return
            self.store.delete_if(LEASE_KEY, self.version)
            self.lost = "released"


def acquire(store: storage.Storage, ttl: float, wait: float, legacy_after: float = 0.0) -> Lease:
    """Take the backup folder's commit lease, renewed every ``ttl/3`` s until released.

    A lease not renewed for ``ttl`` s is taken over (a lease of a runner that never renews:
    after ``legacy_after`` s, 0 never). A live holder (seen renewing) is waited for up to
    ``wait`` s, then a transient ConcurrentRun error names it.
    """
    started = time.monotonic()
    announced = False
    seen: tuple[str, str] | None = None  # (runId, version) first seen of the current holder
    renewal_seen = False
    current: tuple[str, Holder] | None = None
    run_id = uuid.uuid4().hex
    while True:
        now = datetime.datetime.now(datetime.UTC)
        ours = Holder.this_run(ttl, now, run_id)
        if current is None:  # created only where none was seen, never into the instant of a local renewal
            try:
                return Lease(store, ours, store.put_bytes(LEASE_KEY, ours.to_json(), exclusive=True), ttl)
            except errors.DbopsError as error:
                if error.reason != "AlreadyExists":
                    raise
            current = _read(store)
            if current is None:
                continue  # released meanwhile
        version, holder = current
        if holder.run_id == ours.run_id:  # a retried request whose first attempt created it
            return Lease(store, ours, version, ttl)
        if seen is None or seen[0] != holder.run_id:
            seen, renewal_seen = (holder.run_id, version), False
        elif seen[1] != version:
            renewal_seen = True
        verdict = decide(holder, now, ttl=ttl, legacy_after=legacy_after, waited=time.monotonic() - started,
                         wait=wait, renewal_seen=renewal_seen)
        if verdict is Verdict.TAKE_OVER:
            try:
                taken = store.put_bytes(LEASE_KEY, ours.to_json(), if_version=version)
            except errors.DbopsError as error:
                if error.reason != "AlreadyExists":
                    raise
                current = _read(store)  # another run took it over (or its holder renewed) first
                if current is not None and current[1].run_id == ours.run_id:  # or our retried request did
                    return Lease(store, ours, current[0], ttl, took_over=holder)
                continue
            print(f"took over a stale commit lease {store.location.uri(LEASE_KEY)} of {holder.describe()}: "
                  f"not renewed for {stale_bound(holder, ttl, legacy_after):g} s (its runner was killed?)",
                  file=sys.stderr, flush=True)
            return Lease(store, ours, taken, ttl, took_over=holder)
        if verdict is Verdict.GIVE_UP:
            raise errors.TransientError(
                f"backup {store.location.uri()}: another run of the same backup holds {LEASE_KEY}: "
                f"{holder.describe()}; retry later",
                reason="ConcurrentRun",
            )
        if not announced:
            announced = True
            print(f"waiting for another run of the same backup to commit: {store.location.uri(LEASE_KEY)} "
                  f"held by {holder.describe()}", file=sys.stderr, flush=True)
        time.sleep(POLL_SECONDS)
        current = _read(store)
