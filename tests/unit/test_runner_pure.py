"""Pure parts of the backup runner: codecs, locations, part sizes, scopes, TOC selection, errors."""

from __future__ import annotations

import io
import os

import pytest

from dbops import errors
from dbops.runner import (
    backup,
    backup_scope,
    compression,
    connection,
    progress,
    restore_pipes,
    restore_tables,
    restore_toc,
    storage,
)
from dbops.runner.manifest import BackupScope, parse_manifest

PAYLOAD = os.urandom(200_000) + b"abc" * 100_000


@pytest.mark.parametrize("codec", compression.CODECS)
def test_codecs_round_trip_in_chunks(codec: str) -> None:
    packer = compression.compressor(codec)
    packed = b"".join(packer.compress(PAYLOAD[i:i + 65536]) for i in range(0, len(PAYLOAD), 65536)) + packer.flush()
    unpacker = compression.decompressor(codec)
    unpacked = b"".join(unpacker.decompress(packed[i:i + 1000]) for i in range(0, len(packed), 1000))
    unpacker.finish()
    assert unpacked == PAYLOAD


@pytest.mark.parametrize("codec", ["zstd", "gzip"])
def test_truncated_compressed_streams_are_detected(codec: str) -> None:
    packer = compression.compressor(codec)
    packed = packer.compress(PAYLOAD) + packer.flush()
    unpacker = compression.decompressor(codec)
    unpacker.decompress(packed[: len(packed) - 50])
    with pytest.raises(errors.VerificationError, match="truncated"):
        unpacker.finish()


@pytest.mark.parametrize(("codec", "level"), [("zstd", 0), ("zstd", 23), ("gzip", 10), ("brotli", 1)])
def test_bad_codec_or_level_is_a_user_error(codec: str, level: int) -> None:
    with pytest.raises(errors.InvalidSpecError):
        compression.compressor(codec, level)


def test_locations() -> None:
    s3 = storage.parse_location("s3://bucket/some/prefix/")
    assert (s3.scheme, s3.bucket, s3.path) == ("s3", "bucket", "some/prefix")
    assert s3.child("ns", "db", "b1").uri("dump.zst") == "s3://bucket/some/prefix/ns/db/b1/dump.zst"
    assert storage.parse_location("s3://bucket").child("a").uri() == "s3://bucket/a"
    local = storage.parse_location("file:///var/backups")
    assert local.child("ns", "db").uri("manifest.json") == "file:///var/backups/ns/db/manifest.json"
    assert storage.parse_location("relative/dir").path == os.path.abspath("relative/dir")
    with pytest.raises(errors.InvalidSpecError):
        storage.parse_location("ftp://user:pw@host/x")


def test_backup_location_accepts_the_folder_or_its_manifest() -> None:
    assert storage.backup_location("s3://b/p/ns/db/n/manifest.json") == storage.parse_location("s3://b/p/ns/db/n")
    assert storage.backup_location("/x/ns/db/n/manifest.json").path == "/x/ns/db/n"
    assert storage.backup_location("/x/ns/db/n").path == "/x/ns/db/n"


def test_part_size_fits_twice_the_database_in_10000_parts() -> None:
    mib = 1024 * 1024
    assert storage.part_size_for(0) == 8 * mib
    assert storage.part_size_for(100 * mib) == 8 * mib
    size = 500 * 1024 * mib
    part = storage.part_size_for(size)
    assert part % mib == 0 and part * storage.MAX_PARTS >= 2 * size
    with pytest.raises(errors.ConfigurationError):
        storage.part_size_for(30 * 1024**4)


def test_backup_folder_rejects_path_tricks() -> None:
    root = storage.parse_location("/b")
    assert backup.backup_folder(root, "ns", "db", "n").path == "/b/ns/db/n"
    for bad in ("", "..", "a/b"):
        with pytest.raises(errors.InvalidSpecError):
            backup.backup_folder(root, "ns", "db", bad)


def test_scope_arguments() -> None:
    scope = BackupScope(schema_only=True, schemas=["app"], exclude_tables=["app.audit*"],
                        exclude_table_data=["app.events"])
    assert backup_scope.scope_arguments(scope) == ["--schema-only", "--schema=app", "--exclude-table=app.audit*",
                                             "--exclude-table-data=app.events"]
    with pytest.raises(errors.InvalidSpecError):
        backup_scope.scope_arguments(BackupScope(schema_only=True, data_only=True))


def test_tables_in_scope_follows_pg_dump_patterns() -> None:
    tables = [("app", "users"), ("app", "bookings"), ("app", "audit_2025"), ("public", "users"), ("x", "Mixed")]
    assert backup_scope.tables_in_scope(tables, BackupScope()) == [(s, t, True) for s, t in tables]
    assert backup_scope.tables_in_scope(tables, BackupScope(tables=["users"])) == [
        ("app", "users", True), ("public", "users", True)]
    assert backup_scope.tables_in_scope(tables, BackupScope(tables=["app.users"])) == [("app", "users", True)]
    assert [t for _, t, _ in backup_scope.tables_in_scope(tables, BackupScope(exclude_tables=["app.audit_*"]))] == [
        "users", "bookings", "users", "Mixed"]
    assert backup_scope.tables_in_scope(tables, BackupScope(tables=['x."Mixed"'])) == [("x", "Mixed", True)]
    assert backup_scope.tables_in_scope(tables, BackupScope(tables=["x.mixed"])) == []
    scoped = backup_scope.tables_in_scope(tables, BackupScope(schemas=["app"], exclude_table_data=["bookings"]))
    assert scoped == [("app", "users", True), ("app", "bookings", False), ("app", "audit_2025", True)]
    assert {d for _, _, d in backup_scope.tables_in_scope(tables, BackupScope(schema_only=True))} == {False}


def test_manifest_parse_errors_are_verification_errors() -> None:
    with pytest.raises(errors.VerificationError, match="not a valid dbops manifest"):
        parse_manifest(b"{\"name\": 1}", "s3://b/m.json")
    with pytest.raises(errors.VerificationError):
        parse_manifest(b"\x00garbage", "s3://b/m.json")


TOC = """;
; Archive created at 2026-11-25 12:00:00 UTC
3401; 0 16390 TABLE DATA app users postgres
3402; 0 16400 TABLE DATA app bookings postgres
3403; 0 16410 TABLE DATA public users postgres
3404; 0 0 SEQUENCE SET app users_id_seq postgres
3405; 0 0 SEQUENCE SET app ticket_seq postgres
3406; 2606 16420 CONSTRAINT app users users_pkey postgres
"""


def test_table_data_list_selects_data_and_owned_sequences() -> None:
    listing = restore_toc.table_data_list(TOC, ["app.users"], ["app.users_id_seq"])
    assert listing.splitlines() == ["3401; 0 16390 TABLE DATA app users postgres",
                                    "3404; 0 0 SEQUENCE SET app users_id_seq postgres"]


def test_resolve_tables_against_the_manifest() -> None:
    manifest = parse_manifest(
        b'{"name":"b","namespace":"n","database":"d","format":"custom","codec":"zstd","compressionLevel":3,'
        b'"objects":[{"name":"dump.zst","sizeBytes":1,"sha256":"0"}],"serverVersion":"18","serverVersionNum":180000,'
        b'"dumpToolVersion":"18","databaseSizeBytes":1,"startedAt":"2026-01-01T00:00:00Z",'
        b'"completedAt":"2026-01-01T00:00:01Z","tables":[{"schema":"app","name":"users","rows":1},'
        b'{"schema":"public","name":"users","rows":2},{"schema":"app","name":"bookings","rows":3}]}',
        "test",
    )
    assert restore_tables.resolve_tables(manifest, ("bookings", "public.users")) == ["app.bookings", "public.users"]
    with pytest.raises(errors.InvalidSpecError, match="ambiguous"):
        restore_tables.resolve_tables(manifest, ("users",))
    with pytest.raises(errors.NotFoundError):
        restore_tables.resolve_tables(manifest, ("app.nope",))
    assert manifest.rows_by_table() == {"app.users": 1, "public.users": 2, "app.bookings": 3}


def test_unknown_settings_are_dropped_from_the_script_header_only() -> None:
    script = (b"SET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET lock_timeout = 0;\n"
              b"COPY t (v) FROM stdin;\nSET transaction_timeout = 0;\n\\.\n")
    out = io.BytesIO()
    restore_pipes.drop_unknown_settings(io.BytesIO(script), out)
    assert out.getvalue() == (b"SET statement_timeout = 0;\nSET lock_timeout = 0;\n"
                              b"COPY t (v) FROM stdin;\nSET transaction_timeout = 0;\n\\.\n")
    assert restore_pipes.needs_settings_filter(15, 18) and not restore_pipes.needs_settings_filter(17, 18)


def test_connection_settings_from_uri_env_and_flags() -> None:
    env = {"DBOPS_DATABASE_URI": "postgresql://app:s3cr%40t@db.example:6432/shop?sslmode=require",
           "PGUSER": "ignored", "PGPASSWORD": "other"}
    settings = connection.from_environment(dbname="other_db", environ=env)
    assert settings.password == "s3cr@t"
    assert settings.params["host"] == "db.example" and settings.params["user"] == "app"
    assert settings.dbname == "other_db"
    assert "s3cr" not in settings.conninfo() and "s3cr" not in settings.describe()
    assert settings.subprocess_env()["PGPASSWORD"] == "s3cr@t"
    plain = connection.from_environment(environ={"PGHOST": "h", "PGPASSWORD": "pw"}, port=5433)
    assert plain.params == {"host": "h", "port": "5433"} and plain.password == "pw"


@pytest.mark.parametrize(("message", "kind", "text"), [
    ('FATAL:  password authentication failed for user "app"', errors.AuthenticationError, "rejected the credentials"),
    ('FATAL:  database "shop" does not exist', errors.NotFoundError, 'database "shop" does not exist'),
    ("connection refused\n\tIs the server running", errors.TransientError, "cannot reach PostgreSQL"),
    ("could not translate host name \"nohost\"", errors.TransientError, "cannot reach PostgreSQL"),
])
def test_connection_errors_are_mapped_and_redacted(message: str, kind: type, text: str) -> None:
    settings = connection.from_environment(environ={"DBOPS_DATABASE_URI": "postgresql://app:Pw-9876@h/shop"})
    error = connection.connection_error(message + " postgresql://app:Pw-9876@h/shop", settings)
    assert isinstance(error, kind)
    assert text in str(error) and "Pw-9876" not in str(error)


def test_settings_filter_works_on_arbitrary_chunks() -> None:
    script = (b"SET statement_timeout = 0;\nSET transaction_timeout = 0;\n"
              b"CREATE TABLE t (v text);\nSET transaction_timeout = 0;\n")
    out: list[bytes] = []
    sink = restore_pipes.SettingsFilter(out.append)
    for i in range(len(script)):
        sink(script[i:i + 1])
    sink.flush()
    assert b"".join(out) == (b"SET statement_timeout = 0;\nCREATE TABLE t (v text);\n"
                             b"SET transaction_timeout = 0;\n")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_logs_lines_off_a_terminal_and_redraws_on_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOPS_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    meter = progress.Progress("backup db", stream=log)
    meter.add(3 * 1024 * 1024)
    meter.finish()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("backup db: 3.0 MiB at ") and lines[-1].endswith("s")
    assert "\r" not in log.getvalue()
    tty = _Tty()
    live = progress.Progress("restore", total=10, stream=tty)
    live.add(5)
    live.finish()
    assert tty.getvalue().startswith("\r\x1b[K") and "(50% of ~10 B)" in tty.getvalue()
    assert progress.format_bytes(1536) == "1.5 KiB" and progress.format_bytes(10) == "10 B"
