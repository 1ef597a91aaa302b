"""The base model of the API: camelCase aliases, strict fields, docstrings as descriptions."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

GROUP = "dbops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Rule:
    """One admission rule, owned once: the CEL the API server runs and its Python twin the operator runs.

    ``holds`` reads the model as CEL reads the stored object: ``has(self.x)`` is ``x is not None`` (the API
    server keeps an explicit null of a nullable field, and ``has`` is false for it).
    """

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None
    describe: Callable[[Any], str] | None = None
    """The operator's message for a model breaking the rule, naming the values (default: ``message``)."""

    def schema(self) -> dict[str, str]:
        """The x-kubernetes-validations entry."""
        entry = {"rule": self.cel, "message": self.message}
        if self.field_path:
            entry["fieldPath"] = self.field_path
        return entry


def _add_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    rules = getattr(cls, "rules", ())
    if rules:
        schema.setdefault("x-kubernetes-validations", []).extend(rule.schema() for rule in rules)


class ApiModel(BaseModel):
    """A model of the dbops API: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
        json_schema_extra=_add_rules,
    )
    rules: ClassVar[tuple[Rule, ...]] = ()
    """Cross-field rules: CEL in the CRD, checked here too (see Rule)."""

    @model_validator(mode="after")
    def _rules_hold(self) -> Self:
        for rule in type(self).rules:
            if not rule.holds(self):
                where = f"{rule.field_path.lstrip('.')}: " if rule.field_path else ""
                raise ValueError(where + (rule.describe(self) if rule.describe else rule.message))
        return self

    @model_validator(mode="before")
    @classmethod
    def _no_null_enums(cls, data: Any) -> Any:
        # The API server refuses an explicit null for an enum even when the field is optional; so does the model.
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias or name
                if data.get(key, ...) is None and _is_optional_enum(field.annotation):
                    raise ValueError(f"{key}: null is not one of the allowed values (leave the field out instead)")
        return data

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON form, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _is_optional_enum(annotation: Any) -> bool:
    if get_origin(annotation) not in (Union, types.UnionType):
        return False
    return any(get_origin(arg) is Literal for arg in get_args(annotation))
