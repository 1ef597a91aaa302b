"""The migration revision counts only what the user set, and a finished run hashed by an older release is re-keyed."""

from __future__ import annotations

from typing import Any

from dbops.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from dbops.controller import migration as migration_controller
from dbops.reconcile import migration_runs

SPEC: dict[str, Any] = {"database": {"uriSecretRef": {"name": "db", "key": "uri"}},
                        "source": {"inline": [{"version": "0001", "name": "a", "up": "CREATE TABLE a ();"}]}}
FILES = {"0001_a.up.sql": "CREATE TABLE a ();"}


def finished(**extra: Any) -> DatabaseMigrationStatus:
    return DatabaseMigrationStatus.model_validate({"phase": "Succeeded", "sourceHash": "0ld0ld0ld0ld0ld0",
                                                   "observedGeneration": 3, **extra})


def test_a_field_set_to_its_default_does_not_change_the_revision() -> None:
    base = migration_controller.revision_of(DatabaseMigrationSpec.model_validate(SPEC), FILES)
    explicit = DatabaseMigrationSpec.model_validate({**SPEC, "allowGaps": False})  # the default, spelled out
    assert migration_controller.revision_of(explicit, FILES) == base
    changed = DatabaseMigrationSpec.model_validate({**SPEC, "allowGaps": True})
    assert migration_controller.revision_of(changed, FILES) != base
    assert migration_controller.revision_of(DatabaseMigrationSpec.model_validate(SPEC),
                                            {**FILES, "0002_b.up.sql": "SELECT 1;"}) != base


def test_a_finished_run_of_the_same_generation_and_files_is_adopted() -> None:
    assert migration_runs.adopts_revision(finished(), "new", generation=3, recorded_files=FILES, files=FILES)


def test_anything_that_may_differ_starts_a_new_run_instead() -> None:
    adopt = migration_runs.adopts_revision
    assert not adopt(finished(), "new", generation=4, recorded_files=FILES, files=FILES)  # the spec was edited
    assert not adopt(finished(), "new", generation=3, recorded_files={**FILES, "0001_a.up.sql": "x"}, files=FILES)
    assert not adopt(finished(), "new", generation=3, recorded_files=None, files=FILES)  # snapshot gone
    assert not adopt(finished(phase="Migrating"), "new", generation=3, recorded_files=FILES, files=FILES)
    assert not adopt(finished(observedGeneration=None), "new", generation=3, recorded_files=FILES, files=FILES)
    assert not adopt(finished(sourceHash="new"), "new", generation=3, recorded_files=FILES, files=FILES)
