"""docs/api-reference.md: generated from the models, complete, in sync (like the CRDs), linked from README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dbops.api import crd, kinds, reference
from dbops.api.base import ApiModel
from dbops.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "api-reference.md"


def models() -> list[type[ApiModel]]:
    """Every model a kind's spec or status holds, each once."""
    found: list[type[ApiModel]] = []
    queue: list[type[ApiModel]] = [m for kind in kinds.ALL_KINDS for m in (kind.spec, kind.status)]
    while queue:
        model = queue.pop(0)
        if model not in found:
            found.append(model)
            queue += [sub for f in model.model_fields.values()
                      if (sub := reference.nested_model(f.annotation)) is not None]
    return found


def test_the_committed_reference_matches_the_models() -> None:
    assert DOC.read_text() == reference.render(), "docs/api-reference.md drifted from the models: run `dbops crds`"


def test_every_field_of_every_kind_is_in_the_reference_with_its_description() -> None:
    text = reference.render()
    sections = {m[1]: m[2] for m in re.finditer(r"^### (\w+)\n(.*?)(?=^### |^## |\Z)", text, re.M | re.S)}
    assert len(models()) >= 70
    for model in models():
        section = sections[model.__name__]
        for name, field in model.model_fields.items():
            row = next((line for line in section.splitlines() if line.startswith(f"| `{field.alias or name}` |")),
                       None)
            assert row is not None, f"{model.__name__}.{field.alias or name} is missing"
            assert reference._text(field.description or "") in row


def test_every_field_has_a_description_for_kubectl_explain() -> None:
    """Status too (the CRD test covers the spec's): `kubectl explain dbm.status.importedHistory` says something."""
    missing = [f"{model.__name__}.{name}" for model in models() for name, field in model.model_fields.items()
               if not (field.description or "").strip()]
    assert missing == []
    for kind in kinds.ALL_KINDS:
        schema = crd.custom_resource_definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert all(node.get("description") for name, node in schema["properties"].items()
                   if name != "metadata"), kind.kind  # metadata: the API server allows no more than its type

        def walk(node: Any, path: str) -> list[str]:
            bare = [path] if not node.get("description") and not path.endswith(("[]", "{}")) else []
            for key, value in (node.get("properties") or {}).items():
                bare += walk(value, f"{path}.{key}")
            for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
                if isinstance(node.get(key), dict):
                    bare += walk(node[key], path + suffix)
            return bare

        assert walk(schema["properties"]["status"], "status") == [], kind.kind


def test_types_defaults_and_validation_are_shown() -> None:
    text = reference.render()
    assert ("| `orphanScanMaxSize` | string | `256Mi` | length ≤ 32; must be a non-negative quantity of bytes such as "
            "512Mi or 2G |") in text
    assert "| `tool` |" not in text and "| `from` | string |  | required; one of `golang-migrate`, `flyway`, `goose` |" \
        in text
    assert "| `queries` | [][VerifyQuery](#verifyquery) | `[]` | ≤ 16 items; query names must be unique |" in text
    assert "- onFailure: RestoreBackup needs backup.enabled: true" in text  # a model's cross-field rules
    links = set(re.findall(r"\]\(#([\w-]+)\)", text))
    anchors = {heading.lower() for heading in re.findall(r"^##+ (\w+)$", text, re.M)}
    assert links <= anchors, links - anchors


def test_the_command_writes_and_checks_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "ref.md"
    assert cli_main.main(["api-reference", "--check", "--output", str(target)]) == 1
    assert "run `dbops api-reference`" in capsys.readouterr().err
    assert cli_main.main(["api-reference", "--output", str(target)]) == 0
    assert cli_main.main(["api-reference", "--check", "--output", str(target)]) == 0
    target.write_text(target.read_text() + "edited by hand\n")
    assert cli_main.main(["api-reference", "--check", "--output", str(target)]) == 1


def test_the_readme_links_the_reference() -> None:
    assert "(docs/api-reference.md)" in (ROOT / "README.md").read_text()
