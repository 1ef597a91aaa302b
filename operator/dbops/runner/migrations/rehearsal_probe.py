"""What one migration does to a rehearsal copy: AccessExclusive locks, rows touched, size changes.

Locks are sampled from a second session, rows touched are pg_stat_user_tables deltas, and table/index sizes
are taken before and after."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

Connection = psycopg.Connection[Any]
SAMPLE_SECONDS = 0.01
MAX_LISTED = 5

# Granted AccessExclusive locks of one backend on tables (not on the relations a migration just created: those are
# invisible to this session, and nobody else can wait for them either). pg_locks takes no relation lock itself.
_EXCLUSIVE_LOCKS = """
SELECT l.relation::bigint, format('%%I.%%I', n.nspname, c.relname)
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = %s AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND c.relkind IN ('r', 'p', 'm')
"""

_TABLE_STATS = """
SELECT s.relid::bigint, format('%I.%I', s.schemaname, s.relname), s.n_tup_ins, s.n_tup_upd, s.n_tup_del,
       pg_table_size(s.relid), pg_indexes_size(s.relid)
FROM pg_stat_user_tables s
"""


@dataclass(frozen=True)
class TableStats:
    """Counters and sizes of one table at one moment."""

    name: str
    inserted: int
    updated: int
    deleted: int
    table_bytes: int
    index_bytes: int


def table_stats(connection: Connection, exclude: frozenset[str] = frozenset()) -> dict[int, TableStats]:
    """Counters and sizes of every user table by oid, with this session's pending statistics flushed first.

    PostgreSQL 15+ flushes a backend's table counters when it goes idle, at most once a second unless
    ``pg_stat_force_next_flush()`` asked for it; the flush happens before the reply to that query.
    """
    if connection.info.server_version >= 150000:
        connection.execute("SELECT pg_stat_force_next_flush()")
    else:  # pragma: no cover - the statistics collector of 14 and older lags by up to half a second
        time.sleep(0.6)
    with contextlib.suppress(psycopg.Error):
        connection.execute("SELECT pg_stat_clear_snapshot()")
    stats = {}
    for oid, name, inserted, updated, deleted, table_bytes, index_bytes in connection.execute(_TABLE_STATS):
        if name not in exclude:
            stats[int(oid)] = TableStats(name, int(inserted), int(updated), int(deleted), int(table_bytes),
                                         int(index_bytes))
    return stats


@dataclass
class ExclusiveLock:
    """An AccessExclusive lock a migration held on a table, as sampled."""

    table: str
    first_seen: float
    last_seen: float
    table_bytes: int = 0
    """The table's size (with TOAST) before the migration: what a lock on it blocks and a rewrite copies."""

    @property
    def held_ms(self) -> int:
        """How long it was seen held (plus one sampling interval)."""
        return round((self.last_seen - self.first_seen + SAMPLE_SECONDS) * 1000)

    def as_result(self) -> dict[str, Any]:
        """camelCase form for the result JSON."""
        return {"table": self.table, "heldMs": self.held_ms, "tableBytes": self.table_bytes}


class LockSampler:
    """Samples the AccessExclusive table locks of one backend from a second connection, in a thread."""

    def __init__(self, connection: Connection, pid: int, interval: float = SAMPLE_SECONDS) -> None:
        self.connection, self.pid, self.interval = connection, pid, interval
        self.locks: dict[int, ExclusiveLock] = {}
        self.samples = 0
        self.error: str = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbops-lock-sampler", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.sample()
                self._stop.wait(self.interval)
            self.sample()
        except psycopg.Error as error:  # the report says locks may be missing; the rehearsal itself goes on
            self.error = (error.diag.message_primary or str(error)).strip()

    def sample(self) -> None:
        """One look at pg_locks."""
        now = time.monotonic()
        self.samples += 1
        for oid, name in self.connection.execute(_EXCLUSIVE_LOCKS, (self.pid,)).fetchall():
            lock = self.locks.get(int(oid))
            if lock is None:
                self.locks[int(oid)] = ExclusiveLock(str(name), now, now)
            else:
                lock.last_seen = now

    @contextlib.contextmanager
    def running(self) -> Iterator[LockSampler]:
        """Sample while the block runs."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=30)


@dataclass
class MigrationFigures:
    """The rehearsal figures of one migration."""

    version: str
    name: str
    duration_ms: int
    locks: list[ExclusiveLock] = field(default_factory=list)
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    size_changes: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False

    def as_result(self) -> dict[str, Any]:
        """camelCase form for the result JSON (the largest locked tables and size changes first, a few each)."""
        locks = sorted(self.locks, key=lambda lock: (-lock.table_bytes, lock.table))
        result: dict[str, Any] = {
            "version": self.version, "name": self.name, "durationMs": self.duration_ms,
            "rowsInserted": self.inserted, "rowsUpdated": self.updated, "rowsDeleted": self.deleted,
            "exclusiveLocks": [lock.as_result() for lock in locks[:MAX_LISTED]],
            "sizeChanges": self.size_changes[:MAX_LISTED],
        }
        if self.failed:
            result["failed"] = True
        return result


def figures(version: str, name: str, duration_ms: int, sampler: LockSampler, before: dict[int, TableStats],
            after: dict[int, TableStats], *, failed: bool = False) -> MigrationFigures:
    """Combine the samples and the two snapshots of one migration."""
    result = MigrationFigures(version, name, duration_ms, failed=failed)
    for oid, lock in sampler.locks.items():
        lock.table_bytes = before[oid].table_bytes if oid in before else 0
        result.locks.append(lock)
    changes = []
    for oid in before.keys() | after.keys():
        old, new = before.get(oid), after.get(oid)
        if old is not None and new is not None:
            result.inserted += max(0, new.inserted - old.inserted)
            result.updated += max(0, new.updated - old.updated)
            result.deleted += max(0, new.deleted - old.deleted)
        old_total = (old.table_bytes + old.index_bytes) if old else 0
        new_total = (new.table_bytes + new.index_bytes) if new else 0
        entry = new if new is not None else old
        if old_total != new_total and entry is not None:
            changes.append((abs(new_total - old_total), {
                "table": entry.name,
                "tableBytes": [old.table_bytes if old else 0, new.table_bytes if new else 0],
                "indexBytes": [old.index_bytes if old else 0, new.index_bytes if new else 0],
            }))
    result.size_changes = [change for _, change in sorted(changes, key=lambda item: (-item[0], item[1]["table"]))]
    return result
