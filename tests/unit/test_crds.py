"""The generated CRDs: in sync with the models, structural, with the promised metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dbops.api import crd, kinds

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    rendered = crd.render_crds()
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(rendered)
    for name, text in rendered.items():
        assert (CRD_DIR / name).read_text() == text, f"{name} drifted from the models: run `dbops crds`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.get("properties", {}).items():
            found += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: kinds.Kind) -> None:
    schema = crd.custom_resource_definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=lambda k: k.kind)
def test_every_spec_field_is_described(kind: kinds.Kind) -> None:
    schema = crd.custom_resource_definition(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented = [path for path, node in _walk(schema["properties"]["spec"])
                    if path and not path.endswith(("[]", "{}")) and not node.get("description")]
    assert undocumented == []


@pytest.mark.parametrize("kind", kinds.ALL_KINDS, ids=lambda k: k.kind)
def test_crd_names_category_and_status_subresource(kind: kinds.Kind) -> None:
    spec = crd.custom_resource_definition(kind)["spec"]
    assert spec["names"]["categories"] == ["dbops"]
    assert spec["names"]["shortNames"]
    assert spec["versions"][0]["subresources"] == {"status": {}}
    assert spec["versions"][0]["additionalPrinterColumns"][0]["name"] == "Phase"
