"""Framework detection and bookkeeping tables for command-mode row counts."""

from __future__ import annotations

import pytest

from dbops.runner.migrations import frameworks


@pytest.mark.parametrize(("argv", "expected"), [
    (["python", "/app/manage.py", "migrate", "--noinput"], "django"),
    (["alembic", "upgrade", "head"], "alembic"),
    (["/flyway/flyway", "migrate"], "flyway"),
    (["migrate", "-path", "/m", "-database", "$DATABASE_URL", "up"], "golang-migrate"),
    (["./bin/rails", "db:migrate"], None),
])
def test_detect(argv: list[str], expected: str | None) -> None:
    assert frameworks.detect(argv) == expected


def test_bookkeeping_tables() -> None:
    assert "public.django_migrations" in frameworks.bookkeeping_tables("django")
    assert frameworks.bookkeeping_tables("none") == frozenset()
    unknown = frameworks.bookkeeping_tables(None)
    assert {"public.alembic_version", "public.flyway_schema_history", "public.schema_migrations"} <= unknown


def test_history_change() -> None:
    assert frameworks.history_change("django", ["a.1"], ["a.1", "a.2"]) == {
        "framework": "django", "added": ["a.2"], "removed": []}
    assert frameworks.history_change("alembic", ["abc"], ["def"]) == {
        "framework": "alembic", "before": "abc", "after": "def"}
