"""Runner flags for a DatabaseMigration's verification settings beyond the builtins list (pure)."""

from __future__ import annotations

from dbops.api.migration import MigrationVerification


def verification_args(verify: MigrationVerification) -> list[str]:
    """``--row-count-tables``/``--row-count-tolerance``/``--framework`` when rowCounts runs."""
    args: list[str] = []
    counts = verify.row_counts
    if "rowCounts" in verify.builtin:
        if counts.tables:
            args += ["--row-count-tables", ",".join(counts.tables)]
        if counts.tolerance_percent:
            args += ["--row-count-tolerance", f"{counts.tolerance_percent:g}"]
        if counts.framework != "auto":
            args += ["--framework", counts.framework]
    return args
