"""Migration frameworks seen from the database: their bookkeeping tables and their own record of what ran.

Bookkeeping tables are left out of row-count checks; what ran is e.g. Django's ``django_migrations`` rows or
Alembic's revision, before and after."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from dbops.api.framework_detect import detect as detect  # re-exported: detection is pure, the API's

Connection = psycopg.Connection[Any]

# Tables a framework writes itself while migrating (history, content types, permissions): their row counts
# change on every correct run, so comparing them before and after says nothing about the user's data.
BOOKKEEPING: dict[str, tuple[str, ...]] = {
    "django": ("public.django_migrations", "public.django_content_type", "public.auth_permission"),
    "alembic": ("public.alembic_version",),
    "flyway": ("public.flyway_schema_history",),
    "golang-migrate": ("public.schema_migrations",),
}
FRAMEWORKS = ("auto", "none", *BOOKKEEPING)
_HISTORY_QUERIES = {
    "django": "SELECT app || '.' || name FROM public.django_migrations",
    "alembic": "SELECT version_num FROM public.alembic_version",
    "flyway": "SELECT coalesce(version, '') || ':' || description FROM public.flyway_schema_history WHERE success",
    "golang-migrate": "SELECT version::text || CASE WHEN dirty THEN ' (dirty)' ELSE '' END FROM public.schema_migrations",
}


def bookkeeping_tables(framework: str | None) -> frozenset[str]:
    """The tables to leave out of row counts: the framework's set, or every known set when unknown."""
    if framework == "none":
        return frozenset()
    if framework in BOOKKEEPING:
        return frozenset(BOOKKEEPING[framework])
    return frozenset(table for tables in BOOKKEEPING.values() for table in tables)


def history(connection: Connection, framework: str | None) -> list[str] | None:
    """The framework's record of what ran (sorted), or None when it has no such table (yet)."""
    query = _HISTORY_QUERIES.get(framework or "")
    if query is None:
        return None
    table = BOOKKEEPING[framework or ""][0]
    exists = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not exists or not exists[0]:
        return None
    return sorted(str(row[0]) for row in connection.execute(sql.SQL(query)).fetchall())


def history_change(framework: str, before: list[str] | None, after: list[str] | None) -> dict[str, Any]:
    """``{framework, added, removed}`` (Django, Flyway, golang-migrate) or ``{framework, before, after}`` (Alembic)."""
    was, now = before or [], after or []
    if framework == "alembic":
        return {"framework": framework, "before": ",".join(was) or None, "after": ",".join(now) or None}
    return {"framework": framework, "added": [x for x in now if x not in set(was)],
            "removed": [x for x in was if x not in set(now)]}
