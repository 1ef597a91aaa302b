"""Hypothesis strategies for dbops specs, drawn from the CRD schemas the pydantic models generate, then mutated.

Every leaf is either generated from its schema (pattern, enum, bounds) or, now and then, replaced by a value
from a pool of what users actually get wrong for a field of that name (a cron minute 61, a quantity 1GBB,
a time zone Mars/Base, a table named ``-x``...), so both admitted and refused specs are common.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from dbops.api.crd import openapi_schema
from dbops.api.kinds import ALL_KINDS, Kind
from dbops.api.timezones import ZONES

# Values by field name: realistic ones and the mistakes issue reports list. Left out: a never-firing schedule
# given as a range ("0 0 30-31 2 *"): admitted, and refused by the operator as InvalidSpec (not decidable in CEL).
POOLS: dict[str, list[Any]] = {
    "schedule": ["0 2 * * *", "*/15 * * * *", "0 2 * * SUN", "0 2 * * MON-FRI", "@daily", "0 0 1 jan-mar *",
                 "61 * * * *", "99 99 99 99 99", "0 0 * * 7", "0 0 L * *", "0 2 * * FRI-MON", "5-1 * * * *",
                 "*/0 * * * *", "0 2 * *", "@every 1h", "0  2 * * *", " 0 2 * * *", "0 2 ? * *",
                 "0 0 31 2 *", "0 0 30,31 feb ?", "0 3 31 4,JUN *", "0 0 29 2 *", "0 0 31 2,3 *"],
    "timeZone": ["UTC", "Europe/Berlin", "America/New_York", "Etc/GMT+5", "Asia/Kolkata", "US/Pacific",
                 "Mars/Base", "europe/berlin", "Local", "", "GMT0", "EST5EDT"],
    "duration": ["5s", "1h30m", "2h", "0", "25d", "5min", "1.5s", "24d20h31m23s647ms", "1w", "90m", ""],
    "quantity": ["100m", "1", "0.5", "256Mi", "1Gi", "1G", "1e3", "+1", ".5", "1GBB", "-1", "1E", "0", "2Ei"],
    "resource": ["cpu", "memory", "ephemeral-storage", "gpu", "nvidia.com/gpu", "Memory"],
    "labelKey": ["pool", "example.com/pool", "team", "bad key!", "-x", "a/b/c", "kubernetes.io/os", "x" * 64],
    "labelValue": ["batch", "", "db", "not a value", "x" * 64, "-x", "a.b_c-d"],
    "name": ["app", "mentorhub", "my-db", "-leading", 'quo"te', "a b", "db_1", "x" * 63],
    "table": ["users", "public.users", "bookings", "-x", "a b", "Users", "public.*", "--help", "x\ny"],
    "host": ["pg", "pg.prod.svc", "-h", "10.0.0.1", "db.example:5432", "a b"],
    "envName": ["APP_MODE", "DJANGO_SETTINGS_MODULE", "PGPASSWORD", "DATABASE_URL", "SECRET_KEY", "A=B", "_X",
                "1ABC", "api_token", "a.b"],
    "envValue": ["x", "mentorhub.settings", "postgres://app:pw@db/app", "postgres://app@db/app",
                 "host=db password=x", "", "-v"],
    "valueFrom": [{"secretKeyRef": {"name": "app", "key": "token"}},
                  {"configMapKeyRef": {"name": "cfg", "key": "mode", "optional": True}},
                  {"fieldRef": {"fieldPath": "metadata.name"}}, {"secretKeyRef": {"name": "app"}}, {}],
    "image": ["app:1", "registry.example/app:1.4", "bad image", "app@sha256:" + "a" * 64, "-x"],
    "version": ["1", "0001", "2", "0002", "10", "v1", "1.1", "1_2", "1.0", "2.0.1", "1.x"],
    "migrationName": ["init", "add_users", "create_bookings", "Add-Users", "x", "_leading", "0001"],
    "sql": ["SELECT 1", "CREATE TABLE t (id int)", "SELECT count(*) FROM users", "",
            "-- nothing to do\n", "/* only a comment */", "BEGIN; CREATE TABLE t (id int); COMMIT;"],
    "confirmOverwrite": ["app", "mentorhub", "restored", "yes", "-x"],
    "command": [["python", "manage.py", "migrate"], ["alembic", "upgrade", "head"], ["-x"], []],
    "planHash": ["", "0123456789ab", "0123456789abcdef" * 4, "XYZ", "01234"],
}
# The pool values that are wrong (used by mutations only; drawn specs start from the right ones).
INVALID: set[Any] = {
    "61 * * * *", "99 99 99 99 99", "0 0 * * 7", "0 0 L * *", "0 2 * * FRI-MON", "5-1 * * * *", "*/0 * * * *",
    "0 2 * *", "@every 1h", "0 0 31 2 *", "0 0 30,31 feb ?", "0 3 31 4,JUN *", " 0 2 * * *", "Mars/Base", "europe/berlin", "Local", "", "25d", "5min", "1.5s",
    "1GBB", "-1", "1E", "gpu", "nvidia.com/gpu", "Memory", "bad key!", "-x", "a/b/c", "x" * 64, "not a value",
    "PGPASSWORD", "SECRET_KEY", "A=B", "1ABC", "api_token", "postgres://app:pw@db/app", "host=db password=x",
    "bad image", "v1", "1.1", "Add-Users", "yes", "XYZ", "01234", "a b", 'quo"te', "-leading", "-h", "x\ny",
    "--help", "public.*", "Users", "db.example:5432",
}


def valid(pool: str) -> list[Any]:
    """The right values of a pool."""
    return [value for value in POOLS[pool] if not isinstance(value, str) or value not in INVALID]


_BY_FIELD = {
    "schedule": "schedule", "timeZone": "timeZone", "duration": "duration", "lockTimeout": "duration",
    "statementTimeout": "duration", "ttl": "duration", "maxAge": "duration", "host": "host", "user": "name",
    "tables": "table", "schemas": "table", "excludeSchemas": "table", "excludeTables": "table",
    "excludeTableData": "table", "image": "image", "version": "version", "sql": "sql", "up": "sql", "down": "sql",
    "confirmOverwrite": "confirmOverwrite", "approvedPlanHash": "planHash", "historyTable": "table",
    "targetVersion": "version", "baselineVersion": "version", "exactCountMaxSize": "quantity",
    "orphanScanMaxSize": "quantity", "maxExclusiveLockTableSize": "quantity", "availableSpace": "quantity",
}
_MAP_KEYS = {"requests": "resource", "limits": "resource", "nodeSelector": "labelKey", "podLabels": "labelKey",
             "podAnnotations": "labelKey", "labels": "labelKey", "annotations": "labelKey"}
_MAP_VALUES = {"requests": "quantity", "limits": "quantity", "nodeSelector": "labelValue",
               "podLabels": "labelValue", "labels": "labelValue", "annotations": "labelValue",
               "podAnnotations": "labelValue"}
_EXACTLY_ONE: dict[frozenset[str], list[tuple[str, ...]]] = {
    frozenset({"s3", "pvc"}): [("s3",), ("pvc",)],
    frozenset({"configMapRef", "inline", "command"}): [("configMapRef",), ("inline",), ("command",)],
    frozenset({"backupRef", "storage", "path"}): [("backupRef",), ("storage", "path")],
    frozenset({"uriSecretRef", "host", "name", "user", "userSecretRef"}): [
        ("uriSecretRef",), ("host", "name"), ("host", "name", "user"), ("uriSecretRef", "userSecretRef")],
}
_TEXT = st.text(alphabet="abz09-_. /:=@\"'\n", max_size=10)


def _pooled(generated: st.SearchStrategy[Any], pool: str | None) -> st.SearchStrategy[Any]:
    """Mostly the schema's own values, sometimes the field's pool (mutations and realistic values)."""
    if pool is None:
        return generated
    return st.one_of(generated, st.sampled_from(valid(pool)))


def _string(schema: dict[str, Any], field: str, parent: str) -> st.SearchStrategy[Any]:
    if field == "timeZone":
        return st.sampled_from(ZONES)
    if field == "name" and parent == "env":
        return st.sampled_from(valid("envName"))
    if field == "value" and parent == "env":
        return st.sampled_from(valid("envValue"))
    if field == "name" and parent == "inline":
        return st.sampled_from(valid("migrationName"))
    pattern = schema.get("pattern")
    limit = schema.get("maxLength", 40)
    if field == "schedule":  # the cron pattern is too large to sample quickly: its pool covers every branch
        return st.sampled_from(valid("schedule"))
    if _BY_FIELD.get(field) == "quantity":  # free text is almost never a quantity: mutations bring the bad ones
        return st.sampled_from(valid("quantity"))
    if pattern:
        generated: st.SearchStrategy[Any] = st.from_regex(re.compile(pattern), fullmatch=True).filter(
            lambda value: len(value) <= limit and "\n" not in value)
    else:
        generated = st.text(alphabet="abcxyz019-_./", min_size=schema.get("minLength", 0), max_size=min(limit, 12))
    pool = _BY_FIELD.get(field) or ("name" if field == "name" else None)
    return generated if pattern and field not in _BY_FIELD else _pooled(generated, pool)


def from_schema(schema: dict[str, Any], field: str = "", parent: str = "") -> st.SearchStrategy[Any]:
    """Instances of an OpenAPI schema of the CRDs, with field-aware pools and mutations."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return _string(schema, field, parent)
    if kind == "integer":
        low = schema.get("minimum", -5)
        high = schema.get("maximum", low + 200)
        return st.integers(low, high)
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False, width=32)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        if field == "command":
            return st.sampled_from(POOLS["command"][:2])
        low = schema.get("minItems", 0)
        return st.lists(from_schema(schema["items"], field, field), min_size=low,
                        max_size=min(schema.get("maxItems", 3), low + 2))
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required", []))
        props = schema["properties"]
        for group in _EXACTLY_ONE:
            if group <= set(props):
                # CEL asks for exactly one of these: draw one (mutations try the others).
                return st.one_of(*(st.fixed_dictionaries(
                    {name: from_schema(props[name], name, field) for name in (*choice, *required)},
                    optional={name: from_schema(sub, name, field) for name, sub in props.items()
                              if name not in (*group, *required, "user", "userSecretRef")})
                    for choice in _EXACTLY_ONE[group]))
        return st.fixed_dictionaries(
            {name: from_schema(sub, name, field) for name, sub in props.items() if name in required},
            optional={name: from_schema(sub, name, field) for name, sub in props.items() if name not in required},
        )
    if kind == "object" and "additionalProperties" in schema:
        keys = st.sampled_from(valid(_MAP_KEYS[field])) if field in _MAP_KEYS else _TEXT
        values = (st.sampled_from(valid(_MAP_VALUES[field])) if field in _MAP_VALUES
                  else from_schema(schema["additionalProperties"], "", field))
        return st.dictionaries(keys, values, max_size=3)
    if kind == "object":  # preserve-unknown-fields: command env valueFrom
        return st.sampled_from(POOLS["valueFrom"][:3])
    raise AssertionError(f"no strategy for {schema}")


def cases() -> st.SearchStrategy[tuple[Kind, dict[str, Any]]]:
    """(kind, spec) pairs over every kind."""
    return st.one_of(*(from_schema(openapi_schema(kind.spec)).map(lambda spec, k=kind: (k, spec))
                       for kind in ALL_KINDS))
