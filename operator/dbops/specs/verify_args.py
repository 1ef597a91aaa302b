"""Runner flags for a DatabaseMigration's verification settings beyond the builtins list (pure)."""

from __future__ import annotations

import json

from dbops.api.migration import MigrationVerification
from dbops.api.migration_verify import SizeReport


def verification_args(verify: MigrationVerification) -> list[str]:
    """``--row-count-tables``/``--row-count-tolerance``/``--framework`` when rowCounts runs, ``--queries-json``
    (the queries hold no secrets) and ``--sizes-top``."""
    args: list[str] = []
    counts = verify.row_counts
    if "rowCounts" in verify.builtin:
        if counts.tables:
            args += ["--row-count-tables", ",".join(counts.tables)]
        if counts.tolerance_percent:
            args += ["--row-count-tolerance", f"{counts.tolerance_percent:g}"]
        if counts.framework != "auto":
            args += ["--framework", counts.framework]
    if verify.queries:
        args += ["--queries-json", json.dumps([query.to_wire() for query in verify.queries], separators=(",", ":"))]
    if verify.sizes.top != SizeReport().top:
        args += ["--sizes-top", str(verify.sizes.top)]
    return args
