"""Reading the runner's JSON result into status models, keeping only the fields they know."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from dbops.api.base import ApiModel
from dbops.api.migration import ImportedHistory
from dbops.api.migration_verify import SizeChanges

M = TypeVar("M", bound=ApiModel)
_MORE = re.compile(r"^\.\.\. (\d+) more$")  # what the runner's 4 KiB cap leaves in place of a list's tail


def known_fields(model: type[ApiModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of data that are fields of model (by alias), recursing into nested models."""
    kept: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if alias not in data or data[alias] is None:
            continue
        value = data[alias]
        annotation = info.annotation
        nested = _nested_model(annotation)
        if nested is not None and isinstance(value, Mapping):
            value = known_fields(nested, value)
        elif nested is not None and isinstance(value, list):
            value = [known_fields(nested, v) if isinstance(v, Mapping) else v for v in value]
        kept[alias] = value
    return kept


def _nested_model(annotation: Any) -> type[ApiModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def model_from_result(model: type[M], data: Any) -> M | None:
    """A status model from a part of the runner's result, or None when absent or malformed."""
    if not isinstance(data, Mapping):
        return None
    try:
        return model.model_validate(known_fields(model, data))
    except ValidationError:
        return None


def models_from_result(model: type[M], data: Any) -> list[M]:
    """A list of status models from a list in the runner's result (malformed entries dropped)."""
    if not isinstance(data, list):
        return []
    parsed = (model_from_result(model, item) for item in data)
    return [item for item in parsed if item is not None]


def size_changes(data: Any) -> SizeChanges | None:
    """``status.sizes`` from a result whose lists the 4 KiB cap may have cut: the entries left, the cut ones
    counted in ``omitted`` and said in ``note`` (a marker would otherwise fail the whole model)."""
    if not isinstance(data, Mapping):
        return None
    cleaned, hidden = dict(data), 0
    for key in ("tables", "indexes"):
        items = data.get(key)
        if isinstance(items, list):
            cleaned[key] = [item for item in items if isinstance(item, Mapping)]
            hidden += sum(int(m[1]) for item in items if isinstance(item, str) and (m := _MORE.match(item)))
    if hidden:
        cleaned["omitted"] = int(data.get("omitted") or 0) + hidden
        cleaned["note"] = "; ".join(part for part in (str(data.get("note") or ""), (
            f"{hidden} more not shown: the runner's result is limited to 4 KiB (the Job's log has them all)")) if part)
    return model_from_result(SizeChanges, cleaned)


def imported_history(result: Mapping[str, Any]) -> ImportedHistory | None:
    """``status.importedHistory`` from an apply's result: its brief ``importedFrom`` and the versions the 4 KiB
    cap left of the ``importedHistory`` list (None: nothing was imported)."""
    brief = result.get("importedFrom")
    if not isinstance(brief, Mapping):
        return None
    listed = result.get("importedHistory")
    versions = [v for v in listed if isinstance(v, str) and not _MORE.match(v)] if isinstance(listed, list) else []
    repeatables = brief.get("repeatables")
    return model_from_result(ImportedHistory, {
        **brief, "versions": versions,
        "repeatables": [r for r in repeatables if isinstance(r, Mapping)] if isinstance(repeatables, list) else []})


def failed_checks(data: Any) -> list[str]:
    """``check NAME: detail`` for each failed entry of a result's ``verification.checks`` list."""
    if not isinstance(data, list):
        return []
    return [f"check {item.get('name') or item.get('sql') or '?'}: {item.get('detail') or 'failed'}"[:1024]
            for item in data if isinstance(item, Mapping) and item.get("passed") is False]
