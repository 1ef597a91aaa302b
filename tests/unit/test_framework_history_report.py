"""Command mode's framework history: the snapshot init container of the command Job, verify-db's bounded report,
and the status it lands in (Django rows added/removed, Alembic revision before/after)."""

from __future__ import annotations

import json
from typing import Any

from tests.unit import test_reconcile_migration_command as command_tests
from tests.unit.test_specs_command_jobs import IMAGE, OWNER, spec

from dbops.api.migration import DatabaseMigrationStatus
from dbops.runner.migrations import framework_snapshot
from dbops.specs import command_jobs


def test_the_command_job_snapshots_the_history_first_in_our_image_with_only_our_env() -> None:
    job = command_jobs.build_command_job(OWNER, spec(), revision="abc123", image=IMAGE)
    pod = job["spec"]["template"]["spec"]
    main = pod["containers"][0]
    (init,) = pod["initContainers"]
    assert init["name"] == "framework-snapshot" and init["command"] == ["dbops"]
    assert init["image"] == "mirror.example/dbops:0.1.0"  # jobTemplate.image replaces our image, not the app's
    assert main["image"] == "registry.example/mentorhub:1.4"
    assert init["args"] == ["migrate", "snapshot", "--run", "abc123", "--history-table", "public.dbops_migrations",
                            "--framework", "auto", "--sizes"]
    names = {item["name"] for item in init["env"]}
    assert "SECRET_KEY" not in names and "DJANGO_SETTINGS_MODULE" not in names and "DBOPS_DATABASE_URI" in names
    uri = next(item for item in init["env"] if item["name"] == "DBOPS_DATABASE_URI")
    assert uri["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "uri"}}  # credentials only by reference
    assert init["securityContext"] == main["securityContext"]
    assert init["securityContext"]["readOnlyRootFilesystem"] and init["securityContext"]["runAsNonRoot"]
    assert command_jobs.verify_db_args(spec(), checks_file=False, snapshot_run="abc123")[-2:] == [
        "--snapshot-run", "abc123"]


def test_the_report_is_bounded_with_complete_counts_and_a_note() -> None:
    added = [f"wagtailcore.{n:04d}_step" for n in range(1, 223)]
    change = framework_snapshot.bounded({"framework": "django", "added": added, "removed": []})
    assert change["added"] == added[:20] and change["addedCount"] == 222 and change["removedCount"] == 0
    assert "202 more added not shown" in change["note"] and "log" in change["note"]
    small = framework_snapshot.bounded({"framework": "django", "added": added[:3], "removed": ["a.0001_x"]})
    assert "note" not in small and small["removedCount"] == 1
    alembic = {"framework": "alembic", "before": "ae1027a6acf", "after": "1975ea83b712"}
    assert framework_snapshot.bounded(alembic) == alembic


def verified(history: list[dict[str, Any]]) -> Any:
    return command_tests.runner({"verification": [{"name": "foreignKeys", "passed": True}],
                                 "frameworkHistory": history})


def test_status_carries_what_the_framework_recorded() -> None:
    s = command_tests.spec(preChecks={"enabled": False})
    history = [{"framework": "django", "added": ["mentorship.0002_booking_status"], "removed": [],
                "addedCount": 1, "removedCount": 0},
               {"framework": "alembic", "before": "ae1027a6acf", "after": "1975ea83b712"}]
    observed = command_tests.observe(command=command_tests.COMMAND_OK, verify=verified(history))
    decision = command_tests.run(s, DatabaseMigrationStatus(phase="Verifying"), observed)
    status = decision.status
    assert status.phase == "Succeeded"
    assert [h.framework for h in status.framework_history] == ["django", "alembic"]
    assert status.framework_history[0].added == ["mentorship.0002_booking_status"]
    assert status.framework_history[1].after == "1975ea83b712"
    assert "django: 1 applied, 0 unapplied" in status.message and "alembic: revision ae1027a6acf → 1975ea83b712" in status.message
    wire = json.loads(status.model_dump_json(by_alias=True, exclude_none=True))
    assert wire["frameworkHistory"][0]["addedCount"] == 1
