"""Which migration framework a command line runs (pure, no pydantic: the runner's CLI imports it too)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath


def detect(argv: Sequence[str]) -> str | None:
    """The framework a command line runs (``manage.py migrate`` → django …), or None when unknown."""
    names = [PurePath(part).name for part in argv]
    if "manage.py" in names or "django-admin" in names:
        return "django"
    if "alembic" in names:
        return "alembic"
    if "flyway" in names:
        return "flyway"
    if "migrate" in names[:1] or any(name == "migrate" and "-path" in argv for name in names):
        return "golang-migrate"
    return None
