"""The builtin post-migration checks and their default (pure, no pydantic: the runner's CLI imports it too)."""

from __future__ import annotations

from typing import Literal

BuiltinCheck = Literal["foreignKeys", "orphans", "invalidIndexes", "rowCounts"]
BUILTIN_CHECKS: tuple[BuiltinCheck, ...] = ("foreignKeys", "orphans", "invalidIndexes", "rowCounts")
# rowCounts is opt-in: a correct data migration changes row counts on purpose (see verify.rowCounts).
DEFAULT_BUILTIN_CHECKS: tuple[BuiltinCheck, ...] = ("foreignKeys", "orphans", "invalidIndexes")
