"""The archive's table of contents: listing it and selecting the entries a table restore loads."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from dbops import errors
from dbops.runner import artifact, compression, pgtools, storage
from dbops.runner.manifest import BackupManifest

_TOC_DATA_LINE = re.compile(r"^\d+; \d+ \d+ (TABLE DATA|SEQUENCE SET) (\S+) (\S+) \S*$")


def owned_sequences(conn: psycopg.Connection[Any], tables: list[str]) -> list[str]:
    """Sequences owned by (serial or identity columns of) the tables."""
    rows = conn.execute(
        """
        SELECT sn.nspname || '.' || s.relname, tn.nspname || '.' || t.relname
        FROM pg_depend d
        JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_namespace sn ON sn.oid = s.relnamespace
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        """
    ).fetchall()
    return sorted({str(seq) for seq, table in rows if table in tables})


def table_data_list(toc: str, tables: list[str], sequences: list[str]) -> str:
    """The lines of a ``pg_restore -l`` listing that restore the data of these tables and sequences."""
    wanted_data = set(tables)
    wanted_sequences = set(sequences)
    selected = []
    for line in toc.splitlines():
        match = _TOC_DATA_LINE.match(line.strip())
        if not match:
            continue
        kind, schema, name = match[1], match[2], match[3]
        qualified = f"{schema}.{name}"
        if (kind == "TABLE DATA" and qualified in wanted_data) or (
            kind == "SEQUENCE SET" and qualified in wanted_sequences
        ):
            selected.append(line)
    return "\n".join(selected) + "\n"


def archive_listing(
    store: storage.Storage, manifest: BackupManifest, tools: pgtools.PgTools, local: Path | None
) -> str:
    """``pg_restore -l`` of the archive (from the stream it reads only the header and table of contents)."""
    if local is not None:
        result = subprocess.run([tools.path("pg_restore"), "-l", str(local)], capture_output=True, check=False)
        if result.returncode != 0:
            raise errors.VerificationError(f"cannot list the archive: {result.stderr.decode(errors='replace')[:300]}")
        return result.stdout.decode()
    with tempfile.TemporaryFile() as listing:
        process = subprocess.Popen([tools.path("pg_restore"), "-l"], stdin=subprocess.PIPE, stdout=listing,
                                   stderr=subprocess.DEVNULL)
        sink = artifact.feed_process(process)
        decompressor = compression.decompressor(manifest.codec)
        try:
            for chunk in store.read(manifest.objects[0].name):
                sink(decompressor.decompress(chunk))
                if process.poll() is not None:
                    break
        finally:
            artifact.close_stdin(process)
            process.wait()
        listing.seek(0)
        return listing.read().decode()


