"""`kubectl explain` on the installed CRDs shows the models' descriptions (the same text as docs/api-reference.md),
for spec and status fields alike, as a user exploring the API would read them."""

from __future__ import annotations

import time

from dbops.api import migration
from dbops_testbed.controlplane import ControlPlane


def explain(plane: ControlPlane, path: str) -> str:
    """The explanation, once the API server publishes the CRD's OpenAPI (a moment after it is established)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return " ".join(plane.kubectl("explain", path).split())
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_kubectl_explain_shows_field_descriptions_of_spec_and_status(installed_crds: ControlPlane) -> None:
    text = explain(installed_crds, "databasemigrations.spec.verify.orphanScanMaxSize")
    assert "count orphan rows only on referencing tables up to this size" in text
    text = explain(installed_crds, "databasemigrations.status.importedHistory.repeatables.state")
    assert " ".join((migration.ImportedRepeatable.model_fields["state"].description or "").split()) in text
    assert "APIVersion defines the versioned schema" in explain(installed_crds, "databasebackups.apiVersion")
    fields = explain(installed_crds, "databaserestores.status")
    assert "<no description>" not in fields
