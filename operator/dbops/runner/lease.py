"""The commit lease of one backup folder: only its holder commits dump objects and the manifest.

S3 has no condition across objects, so "no manifest yet, now overwrite the dump" can destroy
the dump of a run that committed in between. Runs of one backup therefore commit one at a time:
the lease object is created exclusively (``If-None-Match: *`` / hard link), a stale one is taken
over only if unchanged since it was judged stale (``If-Match`` / inode check), and the holder
deletes it after the manifest is written (or on failure).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import socket
import sys
import time
import uuid

from dbops import errors
from dbops.runner import storage

LEASE_KEY = ".dbops-lock"
WAIT_SECONDS = 120.0
"""How long a run waits for another run's commit (seconds: a dump commit plus a manifest PUT) to finish."""
POLL_SECONDS = 0.5


@dataclasses.dataclass
class Lease:
    """A held commit lease."""

    store: storage.Storage
    run_id: str

    def release(self) -> None:
        """Delete the lease if this run still holds it (a stale one may have been taken over)."""
        holder = _holder(self.store)
        if holder is not None and holder[1].get("runId") == self.run_id:
            self.store.delete([LEASE_KEY])


def _holder(store: storage.Storage) -> tuple[str, dict[str, object]] | None:
    """The lease's version and content (None when there is no lease)."""
    version = store.version(LEASE_KEY)
    if version is None:
        return None
    try:
        data = json.loads(store.get_bytes(LEASE_KEY))
    except errors.NotFoundError:
        return None
    except ValueError:
        data = {}
    return version, data if isinstance(data, dict) else {}


def _age(holder: dict[str, object], now: datetime.datetime) -> float:
    try:
        acquired = datetime.datetime.fromisoformat(str(holder.get("acquiredAt")))
    except ValueError:
        return float("inf")  # unreadable: treated as stale (it is taken over only if unchanged)
    if acquired.tzinfo is None:
        acquired = acquired.replace(tzinfo=datetime.UTC)
    return (now - acquired).total_seconds()


def acquire(store: storage.Storage, stale_after: float, wait: float = WAIT_SECONDS) -> Lease:
    """Take the backup folder's commit lease, waiting up to ``wait`` s for a live holder.

    A lease older than ``stale_after`` s (0: never stale) is taken over. Raises a transient
    ConcurrentRun error when a live holder keeps it longer than ``wait``.
    """
    run_id = uuid.uuid4().hex
    deadline = time.monotonic() + wait
    announced = False
    while True:
        now = datetime.datetime.now(datetime.UTC)
        body = json.dumps({"runId": run_id, "acquiredAt": now.isoformat(), "host": socket.gethostname()}).encode()
        try:
            store.put_bytes(LEASE_KEY, body, exclusive=True)
            return Lease(store, run_id)
        except errors.DbopsError as error:
            if error.reason != "AlreadyExists":
                raise
        holder = _holder(store)
        if holder is None:
            continue  # released meanwhile
        version, data = holder
        age = _age(data, now)
        if stale_after > 0 and age > stale_after:
            try:
                store.put_bytes(LEASE_KEY, body, if_version=version)
            except errors.DbopsError as error:
                if error.reason != "AlreadyExists":
                    raise
                continue  # another run took it over first
            print(f"took over a stale commit lease of an earlier run: {store.location.uri(LEASE_KEY)} "
                  f"(run {data.get('runId')}, {age:.0f} s old)", file=sys.stderr)
            return Lease(store, run_id)
        if time.monotonic() > deadline:
            raise errors.TransientError(
                f"backup {store.location.uri()}: another run of the same backup (run {data.get('runId')} on "
                f"{data.get('host')}, since {data.get('acquiredAt')}) holds {LEASE_KEY}; retry later",
                reason="ConcurrentRun",
            )
        if not announced:
            announced = True
            print(f"waiting for another run of the same backup to commit: {store.location.uri(LEASE_KEY)} "
                  f"(run {data.get('runId')})", file=sys.stderr, flush=True)
        time.sleep(POLL_SECONDS)
