"""Migration sources: a directory (or mounted ConfigMap) of ``NNNN_name.up.sql`` files, or an inline list.

Naming conventions (validated; see the README's "Migration files"):

    <version>_<name>.up.sql      required; applied by ``dbops migrate apply``
    <version>_<name>.down.sql    optional; applied by ``dbops migrate down``
    V<version>__<name>.sql       Flyway versioned (``U<version>__<name>.sql``: its undo, our down)
    R__<name>.sql                Flyway repeatable: re-applied after the versioned ones when its text changes
    <version>[_<name>].sql       Atlas, in a directory with ``atlas.sum`` (verified first; see ``atlas``)
    <version>_<name>.sql         goose / dbmate: ``-- +goose Up``/``Down``, ``-- migrate:up``/``down`` sections
                                 (an up file's down section is its down script; see ``sections``)

``version`` is digits, or digit runs joined by ``.`` (``1.2_x.up.sql``; also ``_`` in Flyway names), compared
part by part as integers (``dbops.api.versions``); versions must be unique and consecutive
(no gaps, unless allowed). ``name`` matches ``[A-Za-z0-9][A-Za-z0-9_.-]*``.
Both files of one version must carry the same name. The characters fit ConfigMap
keys, which cannot contain ``/``, so a ConfigMap mounts as exactly this directory.
Hidden entries (the ``..data`` links of a mounted ConfigMap) and files that do not
end in ``.sql`` are ignored; any other ``.sql`` file is an error.

A line ``-- dbops:no-transaction`` in a file runs that file outside a transaction,
one statement at a time (for ``CREATE INDEX CONCURRENTLY``). A single enclosing
``BEGIN; … COMMIT;`` is accepted and dropped; other transaction control is an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbops import errors
from dbops.api import versions
from dbops.runner.migrations import atlas, sections
from dbops.runner.migrations import statements as sqlstatements

FILE_NAME = re.compile(r"^(?P<version>\d+(?:\.\d+)*)_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)\.(?P<direction>up|down)\.sql$")
# Flyway: V<version>__<description>.sql (U… is its undo, our down); R__ repeatables are refused by name.
FLYWAY_NAME = re.compile(r"^(?P<prefix>[VU])(?P<version>[0-9][0-9._]*)__(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\.sql$")
# goose / dbmate: one file per version whose -- +goose Up/Down or -- migrate:up/down markers split it.
SINGLE_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\.sql$")
FLYWAY_REPEATABLE = re.compile(r"^R__(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\.sql$")
VERSION = versions.VERSION
REPEATABLE_PREFIX = "R__"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Ours, and the other tools' spellings of "run this file outside a transaction" (accepted as aliases).
NO_TRANSACTION = re.compile(
    r"^\s*--\s*(?:dbops:no-transaction|atlas:txmode\s+none|\+goose\s+NO\s+TRANSACTION"
    r"|migrate:(?:up|down)\b.*\btransaction:false|flyway:executeInTransaction=false)\s*$",
    re.MULTILINE | re.IGNORECASE,
)


@dataclass(frozen=True)
class Script:
    """The SQL of one direction of a migration, split into statements."""

    sql: str
    statements: tuple[sqlstatements.Statement, ...]
    no_transaction: bool
    file: str = ""
    """The file name in the source directory (empty for inline migrations)."""
    path: str = field(default="", compare=False, repr=False)
    """Where the file was read from (empty for inline migrations): lint hands it to squawk in place."""

    @classmethod
    def parse(cls, sql: str, where: str, file: str = "", no_transaction: bool = False,
              first_line: int = 1, path: str = "") -> Script:
        """Parse SQL text, validating its transaction control; ``where`` names it in errors, ``first_line`` is
        the file line the text starts on (a section of a goose/dbmate file)."""
        no_transaction = no_transaction or bool(NO_TRANSACTION.search(sql))
        parsed = sqlstatements.split_statements(sql)
        if first_line != 1:
            parsed = [dataclasses.replace(s, line=s.line + first_line - 1) for s in parsed]
        if not no_transaction:
            parsed = sqlstatements.unwrap_transaction(parsed)
        for statement in parsed:
            if sqlstatements.is_transaction_control(statement):
                raise errors.InvalidSpecError(
                    f"{where}: statement {statement.index} (line {statement.line}) is transaction control "
                    f"({statement.summary(40)}); dbops runs each migration in its own transaction — remove it, "
                    "or add the line '-- dbops:no-transaction' to run the statements one by one"
                )
        return cls(sql=sql, statements=tuple(parsed), no_transaction=no_transaction, file=file, path=path)


@dataclass(frozen=True)
class Migration:
    """One versioned migration: its up script, optional down script and checksum of the up SQL."""

    version: str
    name: str
    up: Script
    down: Script | None = None
    checksum: str = field(default="")
    raw_checksum: str = field(default="")
    """Checksum of the text as stored, CRLF included: a history recorded before normalisation matches it."""
    repeatable: bool = False
    """A Flyway ``R__`` migration: no version (``version`` is ``R__<name>``), re-run when its checksum changes."""

    @property
    def number(self) -> versions.Key:
        """The version's parts as integers (the sort key); a repeatable has none (ValueError)."""
        return versions.key(self.version)

    @property
    def kind(self) -> str:
        """Its history rows' kind: ``repeatable`` rows are kept apart from the versioned ones."""
        return "repeatable" if self.repeatable else "migration"

    @property
    def label(self) -> str:
        """``0003_add_email`` (``R__views`` for a repeatable) — how errors and logs name the migration."""
        return self.version if self.repeatable else f"{self.version}_{self.name}"


def versioned(migrations: list[Migration]) -> list[Migration]:
    """The migrations that have a version (all but the repeatables)."""
    return [m for m in migrations if not m.repeatable]


def repeatables(migrations: list[Migration]) -> list[Migration]:
    """The repeatable migrations, in name order (the order they run in)."""
    return sorted((m for m in migrations if m.repeatable), key=lambda m: m.name)


def checksum_of(sql: str) -> str:
    """sha256 of the up SQL with line endings normalised to LF (a CRLF-only change is no drift)."""
    return hashlib.sha256(normalise_line_endings(sql).encode()).hexdigest()


def raw_checksum_of(sql: str) -> str:
    """sha256 of the SQL exactly as stored (what versions before line-ending normalisation recorded)."""
    return hashlib.sha256(sql.encode()).hexdigest()


def normalise_line_endings(sql: str) -> str:
    """CRLF and lone CR → LF."""
    return sql.replace("\r\n", "\n").replace("\r", "\n")


def source_hash(migrations: list[Migration]) -> str:
    """sha256 over every version, name, up and down script: changes whenever the source changes."""
    digest = hashlib.sha256()
    for migration in migrations:
        down = migration.down.sql if migration.down is not None else ""
        for part in (migration.version, migration.name, migration.up.sql, down):
            digest.update(part.encode())
            digest.update(b"\0")
    return digest.hexdigest()


def make_migration(version: str, name: str, up: str, down: str | None, *, up_file: str = "",
                   down_file: str = "", outside_transaction: set[str] | None = None,
                   directory: Path | None = None) -> Migration:
    """Build and validate one migration from its parts (``*_file``: where they came from, for reports, in
    ``directory`` when given)."""
    version = str(version)
    if not versions.is_version(version):
        raise errors.InvalidSpecError(f"migration version {version!r} is not digits, or digit runs joined by '.' "
                                      "or '_' (e.g. 0001, 1.2), at most 32 characters")
    version = versions.normalise(version)
    if not NAME.match(name):
        raise errors.InvalidSpecError(f"migration {version}: name {name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]*")
    label = f"{version}_{name}"
    forced = outside_transaction or set()
    up_line = down_line = 1
    marked = sections.split(up, f"migration {label} ({up_file or 'up'})")
    if marked is not None:  # a goose/dbmate file: its Down section is the down script, never part of the up
        if marked.no_transaction:
            forced = forced | {"up", "down"}
        up, up_line = marked.up.text, marked.up.first_line
        if marked.down is not None:
            if down is not None:
                raise errors.InvalidSpecError(
                    f"migration {label}: {up_file or 'the up script'} has a down section and there is also a "
                    f"down script{f' ({down_file})' if down_file else ''}; keep one of them"
                )
            down, down_file, down_line = marked.down.text, up_file, marked.down.first_line
    # comment-only up: a recorded no-op
    up_script = Script.parse(up, f"migration {label} (up)", up_file, "up" in forced, up_line,
                             _path(directory, up_file))
    down_script = (Script.parse(down, f"migration {label} (down)", down_file, "down" in forced, down_line,
                                _path(directory, down_file))
                   if down is not None else None)
    return Migration(version=version, name=name, up=up_script, down=down_script, checksum=checksum_of(up),
                     raw_checksum=raw_checksum_of(up))


def _path(directory: Path | None, file: str) -> str:
    return str(directory / file) if directory is not None and file else ""


def validate_sequence(migrations: list[Migration], *, allow_gaps: bool = False) -> list[Migration]:
    """Sort by version (repeatables last, by name) and reject duplicate versions, and gaps unless
    ``allow_gaps`` (golang-migrate, Flyway and timestamp versions leave gaps)."""
    problem = versions.sequence_problem(((m.version, m.label) for m in versioned(migrations)), allow_gaps=allow_gaps)
    if problem:
        raise errors.InvalidSpecError(problem)
    ordered = sorted(versioned(migrations), key=lambda m: m.number)
    return ordered + repeatables(migrations)


def _parse_file_name(file_name: str, text: str = "") -> tuple[str, str, str]:
    """(version, name, direction) of ``0001_name.up.sql`` (golang-migrate), ``V1.2__name.sql`` (Flyway),
    ``R__name.sql`` (Flyway repeatable: version ``R__name``, direction ``repeatable``) or ``0001_name.sql``
    whose ``text`` has goose/dbmate section markers (its up, the down section split off later)."""
    match = FILE_NAME.match(file_name)
    if match:
        return match["version"], match["name"], match["direction"]
    single = SINGLE_FILE_NAME.match(file_name)
    if single and sections.has_markers(text):
        return single["version"], single["name"], "up"
    flyway = FLYWAY_NAME.match(file_name)
    if flyway:
        if not versions.is_version(flyway["version"]):
            raise errors.InvalidSpecError(
                f"migration file {file_name!r}: Flyway version {flyway['version']!r} is not digits separated by "
                "'.' or '_' (e.g. V1.2__x.sql), at most 32 characters"
            )
        return versions.normalise(flyway["version"]), flyway["name"], "up" if flyway["prefix"] == "V" else "down"
    repeatable = FLYWAY_REPEATABLE.match(file_name)
    if repeatable:
        return REPEATABLE_PREFIX + repeatable["name"], repeatable["name"], "repeatable"
    raise errors.InvalidSpecError(
        f"migration file {file_name!r} does not follow the naming convention "
        "<version>_<name>.up.sql / <version>_<name>.down.sql (e.g. 0001_create_users.up.sql), "
        "Flyway's V<version>__<name>.sql / U<version>__<name>.sql / R__<name>.sql, or <version>_<name>.sql "
        "with goose's '-- +goose Up' / dbmate's '-- migrate:up' marker"
    )


def load_directory(path: Path, *, allow_gaps: bool = False) -> list[Migration]:
    """Load migrations from a directory of ``NNNN_name.up.sql`` / ``NNNN_name.down.sql`` (or Flyway) files."""
    if not path.is_dir():
        raise errors.NotFoundError(f"migration source directory {path} does not exist")
    if (path / atlas.SUM_FILE).is_file():
        # Atlas: the sum file vouches for the whole file set, so gaps (timestamp versions) are no lost files.
        return validate_sequence([make_migration(f.version, f.name, f.text, None, up_file=f.file, directory=path)
                                  for f in atlas.read_directory(path)], allow_gaps=True)
    # version key → direction → (version as written, name, file name, text)
    parts: dict[Any, dict[str, tuple[str, str, str, str]]] = {}
    outside: set[tuple[Any, str]] = set()
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.name.endswith(".sql") or entry.is_dir():
            continue
        text = entry.read_text(encoding="utf-8")
        version, name, direction = _parse_file_name(entry.name, text)
        number = version if direction == "repeatable" else versions.key(version)
        found = parts.setdefault(number, {})
        if direction in found:
            raise errors.InvalidSpecError(
                f"duplicate migration version {version}: {found[direction][2]} and {entry.name}"
            )
        settings = entry.with_name(entry.name + ".conf")  # Flyway's per-script configuration
        if settings.is_file() and re.search(r"^\s*executeInTransaction\s*=\s*false\s*$",
                                            settings.read_text(encoding="utf-8"), re.MULTILINE):
            outside.add((number, direction))
        found[direction] = (version, name, entry.name, text)
    migrations = []
    for number, files in parts.items():
        if "repeatable" in files:
            _, name, file_name, text = files["repeatable"]
            migrations.append(make_repeatable(name, text, file=file_name, directory=path,
                                              no_transaction=(number, "repeatable") in outside))
            continue
        if "up" not in files:
            raise errors.InvalidSpecError(f"migration {files['down'][2]} has a .down.sql (or undo) file but no .up.sql (or V) file")
        version, name, up_file, up_sql = files["up"]
        if "down" in files and files["down"][1] != name:
            raise errors.InvalidSpecError(
                f"migration files {up_file} and {files['down'][2]} disagree on version or name"
            )
        migrations.append(make_migration(version, name, up_sql, files["down"][3] if "down" in files else None,
                                         up_file=up_file, down_file=files["down"][2] if "down" in files else "",
                                         outside_transaction={d for n, d in outside if n == number},
                                         directory=path))
    if not migrations:
        raise errors.InvalidSpecError(
            f"no migrations in {path} (expected files like 0001_create_users.up.sql); is the right ConfigMap mounted?"
        )
    return validate_sequence(migrations, allow_gaps=allow_gaps)


def make_repeatable(name: str, sql: str, *, file: str = "", no_transaction: bool = False,
                    directory: Path | None = None) -> Migration:
    """A Flyway repeatable migration ``R__<name>.sql``."""
    label = REPEATABLE_PREFIX + name
    script = Script.parse(sql, f"repeatable migration {label}", file, no_transaction, path=_path(directory, file))
    return Migration(version=label, name=name, up=script, checksum=checksum_of(sql), raw_checksum=raw_checksum_of(sql),
                     repeatable=True)


def load_inline_file(path: Path, *, allow_gaps: bool = False) -> list[Migration]:
    """Load migrations from a JSON or YAML list of ``{version, name, up, down}``."""
    if not path.is_file():
        raise errors.NotFoundError(f"inline migration file {path} does not exist")
    import yaml  # only for these files: importing it costs `dbops migrate apply` ~10 ms of start-up (P6)

    try:
        document: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise errors.InvalidSpecError(f"{path}: not valid JSON/YAML: {error}") from error
    return load_inline(document, str(path), allow_gaps=allow_gaps)


def load_inline(document: Any, where: str = "inline migrations", *, allow_gaps: bool = False) -> list[Migration]:
    """Validate an already parsed inline list of ``{version, name, up, down}``."""
    if not isinstance(document, list):
        raise errors.InvalidSpecError(f"{where}: expected a list of {{version, name, up, down}}")
    migrations = []
    for position, item in enumerate(document, start=1):
        if not isinstance(item, dict) or not {"version", "name", "up"} <= item.keys():
            raise errors.InvalidSpecError(f"{where}: item {position} needs version, name and up")
        unknown = set(item) - {"version", "name", "up", "down"}
        if unknown:
            raise errors.InvalidSpecError(f"{where}: item {position} has unknown keys {sorted(unknown)}")
        down = item.get("down")
        try:
            migrations.append(make_migration(str(item["version"]), str(item["name"]), str(item["up"]),
                                             None if down in (None, "") else str(down)))
        except errors.InvalidSpecError as error:
            raise errors.InvalidSpecError(f"{where}: item {position}: {error}") from None
    return validate_sequence(migrations, allow_gaps=allow_gaps)


def render_file_set(migrations: list[Migration]) -> dict[str, str]:
    """The file set (ConfigMap data) that represents the migrations in the naming convention."""
    files = {f"{m.label}.sql" if m.repeatable else versions.file_name(m.version, m.name, "up"): m.up.sql
             for m in migrations}
    files.update({versions.file_name(m.version, m.name, "down"): m.down.sql for m in migrations if m.down is not None})
    return files


def dump_inline(migrations: list[Migration]) -> str:
    """The migrations as an inline JSON list (the inverse of ``load_inline``)."""
    return json.dumps(
        [{"version": m.version, "name": m.name, "up": m.up.sql, "down": m.down.sql if m.down else None}
         for m in migrations],
        indent=2,
    )
