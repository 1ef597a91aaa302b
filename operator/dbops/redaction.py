"""Redaction of credentials from URIs, connection strings and free text."""

from __future__ import annotations

import re

_URI_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KEYWORD_PASSWORD = re.compile(r"(?P<key>\b(?:password|passwd|pwd|secret|sslpassword)\s*=\s*)(?P<value>'[^']*'|\S+)", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:password|sslpassword)=)(?P<value>[^&\s]+)", re.I)

REDACTED = "****"


def redact(text: str, *secrets: str | None) -> str:
    """Return text with URI passwords, key=value passwords and the given secret values masked."""
    text = _URI_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m['key']}{REDACTED}", text)
    text = _QUERY_PASSWORD.sub(lambda m: f"{m['key']}{REDACTED}", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, REDACTED)
    return text
