"""Flyway's script checksum, computed as Flyway does, so an import can tell the files are the ones it ran.

Flyway (flyway-core ``ChecksumCalculator``) reads the script line by line (``BufferedReader.readLine``: the
terminators ``\\n``, ``\\r`` and ``\\r\\n`` dropped), strips a byte-order mark from the first line, feeds each
line's UTF-8 bytes to one CRC-32 and stores the result as a signed 32-bit integer. Line endings and blank
lines therefore do not change it.
"""

from __future__ import annotations

import re
import zlib

_TERMINATOR = re.compile(r"\r\n|\r|\n")


def checksum(text: str) -> int:
    """The checksum Flyway records in ``flyway_schema_history.checksum`` for a script with this text."""
    lines = _TERMINATOR.split(text)
    if lines and lines[-1] == "":
        lines.pop()  # a terminator at the end (or an empty file) ends the last line, it starts none
    crc = 0
    for position, line in enumerate(lines):
        if position == 0:
            line = line.removeprefix("\ufeff")
        crc = zlib.crc32(line.encode("utf-8"), crc)
    return crc - (1 << 32) if crc >= (1 << 31) else crc
