"""Which objects a migration statement creates or validates (checked after no-transaction migrations)."""

from __future__ import annotations

import pytest

from dbops.runner.migrations import leftovers
from dbops.runner.migrations import statements as sqlstatements


def statement(text: str) -> sqlstatements.Statement:
    return sqlstatements.Statement(index=1, line=1, text=text)


@pytest.mark.parametrize(("text", "expected"), [
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email)",
     leftovers.IndexRef("users_email", None, "users")),
    ("-- why\ncreate unique index concurrently \"Users_Email\" on app.\"Users\" (email)",
     leftovers.IndexRef("Users_Email", None, 'app."Users"')),
    ("CREATE INDEX app.i ON ONLY app.t (a)", leftovers.IndexRef("i", "app", "app.t")),
    ("CREATE INDEX ON users (email)", None),
    # Regression: an unnamed CONCURRENTLY index was read as an index named "concurrently".
    ("CREATE INDEX CONCURRENTLY ON users (email)", None),
    ("CREATE UNIQUE INDEX CONCURRENTLY ON ONLY app.users (email)", None),
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS app.users_email ON ONLY app.users (email)",
     leftovers.IndexRef("users_email", "app", "app.users")),
    ("CREATE INDEX CONCURRENTLY \"concurrently\" ON users (email)", leftovers.IndexRef("concurrently", None, "users")),
    ("CREATE TABLE users (id int)", None),
])
def test_index_created_by(text: str, expected: leftovers.IndexRef | None) -> None:
    assert leftovers.index_created_by(statement(text)) == expected


@pytest.mark.parametrize(("text", "table"), [
    ("CREATE INDEX CONCURRENTLY ON users (email)", "users"),
    ("-- c\ncreate unique index concurrently on only app.\"Users\" (lower(email))", 'app."Users"'),
    ("CREATE INDEX ON public.users USING gin (tags)", "public.users"),
    ("CREATE INDEX CONCURRENTLY users_email ON users (email)", None),
    ("CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email ON users (email)", None),
])
def test_unnamed_index_table(text: str, table: str | None) -> None:
    assert leftovers.unnamed_index_table(statement(text)) == table


def test_constraint_validated_by() -> None:
    found = leftovers.constraint_validated_by(statement("ALTER TABLE ONLY posts VALIDATE CONSTRAINT Posts_FK"))
    assert found == leftovers.ConstraintRef("posts_fk", "posts")
    assert leftovers.constraint_validated_by(statement("ALTER TABLE posts ADD COLUMN a int")) is None


def test_drop_statement_quotes_the_formatted_name() -> None:
    assert leftovers.drop_statement('app."Users_Email"', concurrently=True).as_string(None) == \
        'DROP INDEX CONCURRENTLY IF EXISTS "app"."Users_Email"'


def test_describe_names_what_was_dropped_and_what_was_left() -> None:
    text = leftovers.describe(["public.a"], {"public.b": "lock timeout"}, ["public.t.fk"])
    assert "public.a dropped" in text and "public.b left in place (lock timeout)" in text
    assert "public.t.fk is still NOT VALID" in text
