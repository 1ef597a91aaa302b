"""Which incomplete uploads count as stale, and how the bound reaches the backup and delete Jobs."""

from __future__ import annotations

import datetime

import pytest

from dbops import errors
from dbops.api.backup import DatabaseBackupSpec
from dbops.cli import main
from dbops.runner import stale
from dbops.specs import jobs
from dbops.specs.owner import Owner

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
OWNER = Owner(kind="DatabaseBackup", namespace="prod", name="nightly", uid="u", generation=1)


def _upload(key: str, hours_ago: float) -> stale.IncompleteUpload:
    return stale.IncompleteUpload(key=key, upload_id=key, initiated=NOW - datetime.timedelta(hours=hours_ago))


def test_only_old_uploads_under_the_folder_itself_are_stale() -> None:
    uploads = [
        _upload("p/ns/db/b1/dump.zst", 25), _upload("p/ns/db/b1/dump/3.dat.zst", 30),
        _upload("p/ns/db/b1/dump.zst", 1),  # a concurrent run still uploading
        _upload("p/ns/db/b10/dump.zst", 48), _upload("p/ns/db/b1", 48), _upload("q/ns/db/b1/dump.zst", 48),
    ]
    chosen = stale.select_stale(uploads, stale.folder_prefix("/p/ns/db/b1/"), 24 * 3600, NOW)
    assert [(u.key, u.initiated) for u in chosen] == [
        ("p/ns/db/b1/dump.zst", NOW - datetime.timedelta(hours=25)),
        ("p/ns/db/b1/dump/3.dat.zst", NOW - datetime.timedelta(hours=30)),
    ]


def test_zero_turns_cleanup_off_and_a_prefix_without_slash_is_refused() -> None:
    uploads = [_upload("p/b1/dump.zst", 1000)]
    assert stale.select_stale(uploads, "p/b1/", 0, NOW) == []
    with pytest.raises(ValueError, match="must end with"):
        stale.select_stale(uploads, "p/b1", 60, NOW)


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("0s", 0.0), ("90m", 5400.0), ("1h30m", 5400.0),
                                               ("24h", 86400.0)])
def test_the_flag_takes_the_crd_duration_syntax(text: str, seconds: float) -> None:
    args = main.build_parser("delete-backup").parse_args(["delete-backup", "--from", "/x",
                                                          "--abort-incomplete-after", text])
    assert stale.max_age_from_args(args) == seconds


def test_a_bad_bound_is_a_user_error_naming_the_flag() -> None:
    args = main.build_parser("backup").parse_args(["backup", "--abort-incomplete-after", "soon"])
    with pytest.raises(errors.InvalidSpecError, match="--abort-incomplete-after"):
        stale.max_age_from_args(args)


def _spec(**s3: str) -> DatabaseBackupSpec:
    return DatabaseBackupSpec.model_validate({
        "database": {"uriSecretRef": {"name": "db", "key": "uri"}},
        "storage": {"s3": {"bucket": "backups", "prefix": "prod", **s3}},
    })


def test_the_spec_bound_reaches_the_backup_and_delete_jobs_and_parses() -> None:
    spec = _spec(abortIncompleteUploadsAfter="6h")
    for job in (jobs.build_backup_job(OWNER, spec, image="img"),
                jobs.build_delete_artifact_job(OWNER, spec, "s3://backups/prod/prod/db/nightly", image="img")):
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--abort-incomplete-after") + 1] == "6h"
        parsed = main.build_parser(args[0]).parse_args(args)
        assert stale.max_age_from_args(parsed) == 6 * 3600
    verify = jobs.build_verify_job(OWNER, spec, "s3://backups/prod/prod/db/nightly", image="img")
    assert "--abort-incomplete-after" not in verify["spec"]["template"]["spec"]["containers"][0]["args"]


def test_without_the_field_the_runner_default_applies_and_the_wire_form_is_unchanged() -> None:
    spec = _spec()
    args = jobs.build_backup_job(OWNER, spec, image="img")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--abort-incomplete-after" not in args
    assert stale.max_age_from_args(main.build_parser(args[0]).parse_args(args)) == 24 * 3600
    assert "abortIncompleteUploadsAfter" not in spec.to_wire()["storage"]["s3"]
