"""CustomResourceDefinitions generated from the pydantic models (the single source of truth)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import yaml
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from dbops.api.base import GROUP, VERSION, ApiModel
from dbops.api.kinds import ALL_KINDS, CATEGORY, Kind

_DROPPED_KEYS = {"title", "$defs", "examples"}
# The texts every Kubernetes type gives these fields (kubectl explain shows them).
_API_VERSION = ("APIVersion defines the versioned schema of this representation of an object. Servers should "
                "convert recognized schemas to the latest internal value, and may reject unrecognized values.")
_KIND = ("Kind is a string value representing the REST resource this object represents. Servers may infer this "
         "from the endpoint the client submits requests to. In CamelCase.")


class _FactoryDefaults(GenerateJsonSchema):
    """Emit defaults made by ``default_factory`` too, fully expanded.

    The API server then fills nested objects (``verify: {decode: true, …}``) so CEL rules can read
    them, and it checks those defaults against the rules, which needs them complete.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = cast(Callable[[], Any], factory)()
            wire = value.to_wire() if isinstance(value, ApiModel) else value
            schema = core_schema.with_default_schema(schema["schema"], default=wire)
        return super().default_schema(schema)


def openapi_schema(model: type[Any], *, mode: str = "validation") -> dict[str, Any]:
    """A structural OpenAPI v3 schema for a model: $refs inlined, Optional as nullable, no titles."""
    raw = model.model_json_schema(by_alias=True, mode=mode, schema_generator=_FactoryDefaults)
    definitions = raw.get("$defs", {})
    converted: dict[str, Any] = _convert(raw, definitions)
    return converted


def _convert(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(definitions[node.pop("$ref").split("/")[-1]])
        target.update({k: v for k, v in node.items() if k in ("description", "default")})
        return _convert(target, definitions)
    any_of = node.get("anyOf")
    if any_of is not None:
        options = [option for option in any_of if option.get("type") != "null"]
        if len(options) == 1 and len(options) < len(any_of):
            merged = {**_convert(options[0], definitions)}
            for key, value in node.items():
                if key != "anyOf" and key not in _DROPPED_KEYS:
                    merged[key] = _convert(value, definitions)
            if merged.get("default", "absent") is None:
                merged.pop("default")
            merged["nullable"] = True
            return merged
        raise ValueError(f"unions other than Optional cannot be expressed in a structural schema: {node}")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    result = {key: _convert(value, definitions) for key, value in node.items() if key not in _DROPPED_KEYS}
    if result.get("type") == "object" and "properties" not in result and "additionalProperties" not in result:
        result["x-kubernetes-preserve-unknown-fields"] = True
    if result.get("type") == "object" and result.get("additionalProperties") is False:
        result.pop("additionalProperties")
    if result.get("type") == "object" and result.get("additionalProperties") in (True, {}):
        # dict[str, Any]: an untyped map would have its values pruned by the API server; keep them.
        result.pop("additionalProperties")
        result["x-kubernetes-preserve-unknown-fields"] = True
    if "default" in result and result["default"] is None:
        result.pop("default")
    return result


def custom_resource_definition(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    spec_schema = openapi_schema(kind.spec)
    status_schema = openapi_schema(kind.status, mode="serialization")
    status_schema.pop("required", None)
    spec_schema["description"] = (kind.spec.__doc__ or "").strip()
    status_schema["description"] = (kind.status.__doc__ or "").strip()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.printer_columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"{kind.kind} of {GROUP}.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": _API_VERSION},
                                "kind": {"type": "string", "description": _KIND},
                                "metadata": {"type": "object"},  # the API server refuses anything more
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def render_crds() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    return {
        f"{GROUP}_{kind.plural}.yaml": yaml.safe_dump(
            custom_resource_definition(kind), sort_keys=False, width=120, allow_unicode=True
        )
        for kind in ALL_KINDS
    }
