"""confirmOverwrite against a database named only in the target's URI Secret (checked by the operator)."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg import conninfo

from dbops import errors
from dbops.api.restore import DatabaseRestoreSpec
from dbops.reconcile.confirmation import check_target, uri_database

URIS = ["postgresql://app:pw@db:5432/mentorhub", "postgres://db/mentor%20hub?sslmode=require",
        "postgresql://db/app?dbname=other", "postgresql://app@db", "postgresql://app@db/", "host=db dbname=app user=u",
        "host=db dbname='my app' password='p w'", "host=db user=u", "dbname=a dbname=b", "postgresql:///app?host=/tmp"]


@pytest.mark.parametrize("uri", URIS)
def test_the_database_a_uri_names_is_what_libpq_reads(uri: str) -> None:
    assert uri_database(uri) == (conninfo.conninfo_to_dict(uri).get("dbname") or None)


def restore(confirm: str, database: dict[str, Any]) -> DatabaseRestoreSpec:
    return DatabaseRestoreSpec.model_validate({"source": {"backupRef": {"name": "b"}}, "target": {"database": database},
                                               "clean": True, "confirmOverwrite": confirm})


def test_a_confirmation_naming_another_database_than_the_uri_is_invalid_naming_the_field() -> None:
    spec = restore("yes", {"uriSecretRef": {"name": "db", "key": "uri"}})
    with pytest.raises(errors.InvalidSpecError, match=r"^confirmOverwrite 'yes' must equal the target database "
                                                      r"'mentorhub' \(named by target\.database\.uriSecretRef"):
        check_target(spec, "postgresql://app:s3cret@db/mentorhub")
    try:
        check_target(spec, "postgresql://app:s3cret@db/mentorhub")
    except errors.InvalidSpecError as error:
        assert "s3cret" not in str(error)
    check_target(restore("mentorhub", {"uriSecretRef": {"name": "db", "key": "uri"}}), "postgresql://db/mentorhub")
    check_target(spec, "postgresql://app@db")  # no database in the URI: libpq's default, compared by the runner
    check_target(spec, None)  # a missing Secret is require_secrets' business
    # target.database.name overrides the URI's database, and admission compares it.
    check_target(restore("app", {"uriSecretRef": {"name": "db", "key": "uri"}, "name": "app"}),
                 "postgresql://db/mentorhub")
