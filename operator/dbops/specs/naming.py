"""Deterministic names for child objects: at most 63 characters, with a short hash suffix."""

from __future__ import annotations

import hashlib

MAX_NAME_LENGTH = 63
HASH_LENGTH = 8


def short_hash(*parts: str | int) -> str:
    """A short, stable hex digest of the parts."""
    digest = hashlib.sha256("\x00".join(str(part) for part in parts).encode()).hexdigest()
    return digest[:HASH_LENGTH]


def child_name(base: str, role: str, *hash_parts: str | int, max_length: int = MAX_NAME_LENGTH) -> str:
    """``<base>-<role>-<hash>`` cut to 63 characters; the same inputs always give the same name."""
    suffix = f"-{role}-{short_hash(*hash_parts)}" if hash_parts else f"-{role}"
    room = max_length - len(suffix)
    return base[:room].rstrip("-.") + suffix


def truncated_name(*parts: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """Parts joined with dashes; when too long, cut and suffixed with a hash of the full name."""
    full = "-".join(parts)
    if len(full) <= max_length:
        return full
    suffix = "-" + short_hash(full)
    return full[: max_length - len(suffix)].rstrip("-.") + suffix
