"""The demo's live table: rows from dbops resources (name, kind, phase, age, message), aligned and cut to width."""

from __future__ import annotations

from datetime import UTC, datetime

from dbops_testbed import incluster

NOW = datetime(2026, 11, 29, 20, 0, 0, tzinfo=UTC)


def item(kind: str, name: str, created: str, status: dict[str, str] | None = None) -> dict[str, object]:
    return {"kind": kind, "metadata": {"name": name, "creationTimestamp": created}, "status": status}


def test_rows_are_oldest_first_with_pending_for_a_missing_status() -> None:
    rows = incluster.table_rows([
        item("DatabaseRestore", "restore", "2026-11-29T19:59:50Z"),
        item("DatabaseBackup", "backup", "2026-11-29T19:57:00Z", {"phase": "Succeeded", "message": "stored"}),
    ], NOW)
    assert rows == [("backup", "DatabaseBackup", "Succeeded", "3m00s", "stored"),
                    ("restore", "DatabaseRestore", "Pending", "10s", "")]


def test_table_is_aligned_and_cut_to_the_terminal_width() -> None:
    lines = incluster.render_table([("a-long-backup-name", "DatabaseBackup", "Running", "5s", "x" * 500)], width=80)
    assert lines[0].split() == ["NAME", "KIND", "PHASE", "AGE", "MESSAGE"]
    assert lines[0].index("KIND") == lines[1].index("DatabaseBackup")
    assert all(len(line) <= 80 for line in lines)
