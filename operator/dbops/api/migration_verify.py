"""What a DatabaseMigration verifies beyond the builtins, and how the outcomes look in status.

Row counts of chosen tables, query plans (EXPLAIN with assertions), table/index size changes and the user's
own smoke-test Jobs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from dbops.api import kubevalues
from dbops.api.base import ApiModel, Rule
from dbops.api.common import Duration, duration_milliseconds
from dbops.api.migration_rehearsal import ByteQuantity, quantity_bytes
from dbops.api.migration_source import EnvVar

TableName = Annotated[str, StringConstraints(pattern=r"^([a-z_][a-z0-9_$]*\.)?[a-z_][a-z0-9_$]*$", max_length=127)]
"""``table`` (schema public) or ``schema.table``, as PostgreSQL folds unquoted names."""
Framework = Literal["auto", "none", "django", "alembic", "flyway", "golang-migrate"]
DEFAULT_SIZE_GUARD = "256Mi"
"""The runner's default for both size guards (exact row counts, orphan scans)."""


def guard_bytes(size: str) -> int:
    """The bytes of a size guard, rounded up (``100m`` is 1 byte, never 0, which means no guard)."""
    value = kubevalues.quantity(size)
    whole = quantity_bytes(size)
    return whole + 1 if value > whole else whole


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
    exact_count_max_size: ByteQuantity = DEFAULT_SIZE_GUARD
    """Command mode: tables up to this size (with indexes and TOAST; a partitioned table's partitions added up) are
    counted exactly with count(*) before and after the command; larger ones are estimated from the statistics
    (pg_stat_user_tables.n_live_tup), and the rowCounts detail names them with this bound. 0: count every table
    exactly (slow on large tables). SQL migrations count every table exactly."""


class VerifyQuery(ApiModel):
    """A query of the application, EXPLAINed after migrating, and what its plan must show."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    """Name shown in status (as query:<name>)."""
    sql: Annotated[str, StringConstraints(min_length=1, max_length=16384)]
    """One statement, as the application runs it (constants instead of parameters)."""
    analyze: bool = False
    """EXPLAIN ANALYZE: runs the statement (inside a transaction that is rolled back) for actual times."""
    uses_index: Annotated[list[TableName], Field(max_length=16)] = Field(default_factory=list)
    """Indexes the plan must use (``index`` or ``schema.index``; a partition's index counts for its parent)."""
    no_seq_scan_on: Annotated[list[TableName], Field(max_length=16)] = Field(default_factory=list)
    """Tables the plan must not read with a Seq Scan (a partition's Seq Scan counts for its parent)."""
    max_cost: Annotated[float, Field(ge=0)] | None = None
    """Upper bound of the planner's total cost."""


class SizeReport(ApiModel):
    """How many table and index size changes status keeps."""

    top: Annotated[int, Field(ge=0, le=25)] = 10
    """Tables and indexes created or dropped first, then the largest size changes; 0: none."""


QUERIES_CEL = [{"rule": "self.all(q, self.exists_one(p, p.name == q.name))", "message": "query names must be unique"}]


def unique_query_names(queries: list[VerifyQuery]) -> list[VerifyQuery]:
    """The pydantic twin of QUERIES_CEL."""
    names = [query.name for query in queries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"query names must be unique: {', '.join(duplicates)}")
    return queries


class SmokeTest(ApiModel):
    """The application's own test, run in its image after the migration (and its verification) succeeded."""

    rules = (Rule("!self.timeout.matches('^(0|(0+(ms|s|m|h|d|w))+)$')", "timeout must be longer than 0",
                  lambda test: duration_milliseconds(test.timeout) > 0, field_path=".timeout"),)

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)]
    """Name shown in status."""
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    """The image that holds the test (e.g. the application's)."""
    command: Annotated[list[Annotated[str, StringConstraints(max_length=4096)]], Field(min_length=1, max_length=64)]
    """Command and arguments, e.g. [python, manage.py, test, smoke] or an HTTP probe; exit 0 passes."""
    env: Annotated[list[EnvVar], Field(max_length=32)] = Field(default_factory=list)
    """Environment (credentials only through valueFrom.secretKeyRef); the database connection is added as for
    command mode (DBOPS_DATABASE_URI, PG*, DATABASE_URL)."""
    timeout: Duration = "10m"
    """The Job's activeDeadlineSeconds: a test still running then fails."""


JOBS_CEL = [{"rule": "self.all(j, self.exists_one(k, k.name == j.name))", "message": "smoke test names must be "
             "unique"}]


def unique_job_names(jobs: list[SmokeTest]) -> list[SmokeTest]:
    """The pydantic twin of JOBS_CEL."""
    names = [job.name for job in jobs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"smoke test names must be unique: {', '.join(duplicates)}")
    return jobs


class SmokeTestResult(ApiModel):
    """The outcome of one smoke test of the last run."""

    name: str
    """The smoke test (verify.jobs[].name)."""
    job_name: str = ""
    """The Job that ran it."""
    state: Literal["Running", "Succeeded", "Failed"] = "Running"
    """Where it is."""
    message: str = ""
    """Exit code and the tail of its output, or the timeout."""


class TableSize(ApiModel):
    """A table (or partition) whose size changed; null: it did not exist then."""

    name: str
    """The table, as schema.table."""
    bytes_before: int | None = None
    """pg_total_relation_size before the migration."""
    bytes_after: int | None = None
    """pg_total_relation_size after the migration."""
    rows_before: int | None = None
    """Live rows as statistics estimate them, before."""
    rows_after: int | None = None
    """The same, after."""


class IndexSize(ApiModel):
    """An index created, dropped or changed in size, with its use (scans since statistics were reset)."""

    name: str
    """The index, as schema.index."""
    table: str = ""
    """The indexed table."""
    bytes_before: int | None = None
    """Size before the migration."""
    bytes_after: int | None = None
    """Size after the migration."""
    scans_before: int | None = None
    """Index scans before (pg_stat_user_indexes.idx_scan)."""
    scans_after: int | None = None
    """Index scans after."""


class SizeChanges(ApiModel):
    """Table and index changes of the last run (command mode: measured by the command Job's snapshot container
    before the command; without that snapshot, sizes after only, the largest first)."""

    tables: list[TableSize] = Field(default_factory=list)
    """Tables created, dropped or changed in size."""
    indexes: list[IndexSize] = Field(default_factory=list)
    """Indexes created, dropped or changed in size."""
    omitted: int = 0
    """Changes not shown (beyond verify.sizes.top)."""
    note: str = ""
    """What the comparison could not show (e.g. the snapshot before the command kept only the largest relations)."""
