"""confirmOverwrite against a target database named only inside a URI Secret, checked before any Job."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

from dbops import errors
from dbops.api.restore import DatabaseRestoreSpec

_KEYWORD_DBNAME = re.compile(r"(?:^|\s)dbname\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)")


def uri_database(uri: str) -> str | None:
    """The database a libpq connection string names (URI or keyword=value form), None when it names none."""
    text = uri.strip()
    if text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        named = parse_qs(parts.query).get("dbname")
        if named:
            return named[-1] or None
        path = unquote(parts.path.lstrip("/"))
        return path or None
    found = _KEYWORD_DBNAME.findall(text)
    if not found:
        return None
    value = found[-1]
    if value.startswith("'"):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value or None


def check_target(spec: DatabaseRestoreSpec, uri: str | None) -> None:
    """InvalidSpecError naming confirmOverwrite when it differs from the database the target's URI names.

    Only for a target given by uriSecretRef alone (admission compares target.database.name), and only when the
    URI names a database (else libpq's default applies and the runner compares at run time).
    """
    database = spec.target.database
    if not spec.confirm_overwrite or database.name is not None or database.uri_secret_ref is None or uri is None:
        return
    named = uri_database(uri)
    if named is not None and named != spec.confirm_overwrite:
        ref = database.uri_secret_ref
        raise errors.InvalidSpecError(
            f"confirmOverwrite {spec.confirm_overwrite!r} must equal the target database {named!r} (named by "
            f"target.database.uriSecretRef, Secret {ref.name} key {ref.key})")
