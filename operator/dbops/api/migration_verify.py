"""What a DatabaseMigration verifies after migrating beyond the builtins: row counts of chosen tables."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from dbops.api.base import ApiModel

TableName = Annotated[str, StringConstraints(pattern=r"^([a-z_][a-z0-9_$]*\.)?[a-z_][a-z0-9_$]*$", max_length=127)]
"""``table`` (schema public) or ``schema.table``, as PostgreSQL folds unquoted names."""
Framework = Literal["auto", "none", "django", "alembic", "flyway", "golang-migrate"]


class RowCountVerification(ApiModel):
    """How the rowCounts builtin compares row counts before and after the migration."""

    tables: Annotated[list[TableName], Field(max_length=256)] = Field(default_factory=list)
    """Compare only these tables (``table`` or ``schema.table``); empty: every user table except the history
    table and the framework's bookkeeping tables."""
    tolerance_percent: Annotated[float, Field(ge=0, le=100)] = 0
    """Allowed change of each table's row count, in percent of its count before."""
    framework: Framework = "auto"
    """Whose bookkeeping tables to leave out (django: django_migrations, django_content_type, auth_permission;
    alembic: alembic_version; flyway: flyway_schema_history; golang-migrate: schema_migrations); auto: detected
    from the command, else every known set; none: leave none out."""
