"""Splitting migration SQL into top-level statements (quotes, dollar quotes and comments respected)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
_TRANSACTION_CONTROL = re.compile(
    r"^(?:BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT)\b", re.IGNORECASE
)
_PASSWORD_LITERAL = re.compile(r"(\bPASSWORD\s+)(?:E?'(?:[^']|'')*'|\$[^$]*\$.*?\$[^$]*\$)", re.IGNORECASE | re.DOTALL)
_OPENING = re.compile(r"^(?:BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
_CLOSING = re.compile(r"^(?:COMMIT|END)\b", re.IGNORECASE)
# Characters where the scanners have something to decide; the text between them is copied or skipped at once.
_SPECIAL = re.compile(r"[-/'\"$;]")
_COMMENT_OR_QUOTE = re.compile(r"[-/'\"$]")


@dataclass(frozen=True)
class Statement:
    """One top-level SQL statement of a migration, with its 1-based position and first line."""

    index: int
    line: int
    text: str

    def summary(self, limit: int = 160) -> str:
        """The statement on one line, shortened to ``limit`` characters, ``PASSWORD '…'`` masked."""
        flat = " ".join(_PASSWORD_LITERAL.sub(r"\1'****'", strip_comments(self.text)).split())
        return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def split_statements(sql: str) -> list[Statement]:
    """Split SQL into top-level statements; empty statements and comment-only text are dropped."""
    statements: list[Statement] = []
    start = 0
    i = 0
    n = len(sql)
    while i < n:
        # Jump over ordinary text to the next character that can start a comment, a quote or end a statement.
        special = _SPECIAL.search(sql, i)
        if special is None:
            break
        i = special.start()
        char = sql[i]
        if char == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif char == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif char == "'":
            i = _skip_quoted(sql, i, "'", backslash=_is_escape_string(sql, i))
        elif char == '"':
            i = _skip_quoted(sql, i, '"', backslash=False)
        elif char == "$":
            match = _DOLLAR_TAG.match(sql, i)
            if match and not _is_identifier_char(sql, i - 1):
                end = sql.find(match.group(0), match.end())
                i = n if end < 0 else end + len(match.group(0))
            else:
                i += 1
        elif char == ";":
            _append(statements, sql, start, i)
            i += 1
            start = i
        else:
            i += 1
    _append(statements, sql, start, n)
    return statements


def strip_comments(text: str) -> str:
    """Text of one statement without its comments (quotes respected)."""
    if "--" not in text and "/*" not in text:
        return text.strip()  # no comment marker anywhere, not even inside a quote
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        special = _COMMENT_OR_QUOTE.search(text, i)
        if special is None:
            out.append(text[i:])
            break
        if special.start() > i:
            out.append(text[i:special.start()])
            i = special.start()
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
            out.append(" ")
        elif text[i] in "'\"":
            end = _skip_quoted(text, i, text[i], backslash=text[i] == "'" and _is_escape_string(text, i))
            out.append(text[i:end])
            i = end
        elif text[i] == "$" and (match := _DOLLAR_TAG.match(text, i)) and not _is_identifier_char(text, i - 1):
            end = text.find(match.group(0), match.end())
            end = n if end < 0 else end + len(match.group(0))
            out.append(text[i:end])
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out).strip()


def is_transaction_control(statement: Statement) -> bool:
    """True for BEGIN / START TRANSACTION / COMMIT / END / ROLLBACK at the top level."""
    return bool(_TRANSACTION_CONTROL.match(strip_comments(statement.text)))


def unwrap_transaction(statements: list[Statement]) -> list[Statement]:
    """Drop one enclosing ``BEGIN; … COMMIT;`` pair (dbops runs each migration in its own transaction)."""
    if len(statements) >= 2:
        first, last = strip_comments(statements[0].text), strip_comments(statements[-1].text)
        if _OPENING.match(first) and _CLOSING.match(last):
            return statements[1:-1]
    return statements


def _append(statements: list[Statement], sql: str, start: int, end: int) -> None:
    text = sql[start:end]
    if not strip_comments(text):
        return
    offset = start + (len(text) - len(text.lstrip()))
    line = sql.count("\n", 0, offset) + 1
    statements.append(Statement(index=len(statements) + 1, line=line, text=text.strip()))


def _skip_block_comment(sql: str, i: int) -> int:
    depth = 0
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def _skip_quoted(sql: str, i: int, quote: str, *, backslash: bool) -> int:
    i += 1
    n = len(sql)
    while i < n:
        char = sql[i]
        if backslash and char == "\\":
            i += 2
        elif char == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return n


def _is_escape_string(sql: str, i: int) -> bool:
    return i > 0 and sql[i - 1] in "eE" and not _is_identifier_char(sql, i - 2)


def _is_identifier_char(sql: str, i: int) -> bool:
    return i >= 0 and (sql[i].isalnum() or sql[i] in "_$")
