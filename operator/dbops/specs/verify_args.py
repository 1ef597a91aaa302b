"""Runner flags for a DatabaseMigration's verification settings beyond the builtins list (pure)."""

from __future__ import annotations

import json

from dbops.api.migration import MigrationVerification
from dbops.api.migration_verify import DEFAULT_SIZE_GUARD, SizeReport, guard_bytes

ORPHAN_BUILTINS = ("foreignKeys", "orphans")


def mebibytes(size: str) -> str:
    """A size guard as the runner's MiB flag value; bytes / 2**20 is exact in a float, so the runner gets the
    same whole bytes back (up to 8 PiB)."""
    return repr(guard_bytes(size) / 1048576)


def exact_count_args(verify: MigrationVerification) -> list[str]:
    """``--row-count-exact-max-mb`` when rowCounts runs with a bound other than the runner's default (the command
    Job's snapshot container and the verify-db Job take the same bound)."""
    size = verify.row_counts.exact_count_max_size
    if "rowCounts" not in verify.builtin or guard_bytes(size) == guard_bytes(DEFAULT_SIZE_GUARD):
        return []
    return ["--row-count-exact-max-mb", mebibytes(size)]


def verification_args(verify: MigrationVerification, *, command_mode: bool = False) -> list[str]:
    """``--row-count-tables``/``--row-count-tolerance``/``--framework`` when rowCounts runs (command mode: and
    its exact-count bound), ``--orphan-scan-max-mb`` when orphans are counted with a bound other than the default,
    ``--queries-json`` (the queries hold no secrets) and ``--sizes-top``."""
    args: list[str] = []
    counts = verify.row_counts
    if "rowCounts" in verify.builtin:
        if counts.tables:
            args += ["--row-count-tables", ",".join(counts.tables)]
        if counts.tolerance_percent:
            args += ["--row-count-tolerance", f"{counts.tolerance_percent:g}"]
        if counts.framework != "auto":
            args += ["--framework", counts.framework]
        if command_mode:
            args += exact_count_args(verify)
    if any(name in verify.builtin for name in ORPHAN_BUILTINS) and \
            guard_bytes(verify.orphan_scan_max_size) != guard_bytes(DEFAULT_SIZE_GUARD):
        args += ["--orphan-scan-max-mb", mebibytes(verify.orphan_scan_max_size)]
    if verify.queries:
        args += ["--queries-json", json.dumps([query.to_wire() for query in verify.queries], separators=(",", ":"))]
    if verify.sizes.top != SizeReport().top:
        args += ["--sizes-top", str(verify.sizes.top)]
    return args
