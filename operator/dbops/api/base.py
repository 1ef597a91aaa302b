"""The base model of the API: camelCase aliases, strict fields, docstrings as descriptions."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

GROUP = "dbops.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class ApiModel(BaseModel):
    """A model of the dbops API: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
    )

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
