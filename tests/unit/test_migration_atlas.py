"""Atlas directories: atlas.sum computed exactly as Atlas does (checked against the sum file in Atlas's own
test data, ariga/atlas sql/migrate/testdata/partial-checkpoint), and a tampered, added or removed file refused
naming the file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dbops import errors
from dbops.runner.migrations import atlas, source

# ariga/atlas sql/migrate/testdata/partial-checkpoint: the files and the atlas.sum `atlas migrate hash` wrote.
ATLAS_FILES = {
    "1_first.sql": "create table `tbl_1` (`col` int);\n",
    "2_second.sql": "create table `tbl_2` (`col` int);\n",
    "3_checkpoint.sql": "-- atlas:checkpoint\n\nCREATE TABLE `tbl_1` (`col` int);\nCREATE TABLE `tbl_2` (`col` int);\n",
    "4_fourth.sql": "create table `tbl_3` (`col` int);\n",
    "5_checkpoint.sql": ("-- atlas:checkpoint\n\nCREATE TABLE `tbl_1` (`col` int);\nCREATE TABLE `tbl_2` (`col` int);\n"
                         "create table `tbl_3` (`col` int);\n"),
    "6_sixth.sql": "CREATE TABLE `tbl_4` (`col` int);\n",
}
ATLAS_SUM = """h1:POfbsH2G2GIXAZQ2CdPa5ufTxcLpcnperz/gX0Vw6Uk=
1_first.sql h1:uJ2MyyeTqXx4rCqtRMQAvRrfsvdwmvsZ3LcadVvCdOc=
2_second.sql h1:TLO00GtsqSi8o0ySoaofBqxemrElL8fHOs3IRnqYvB8=
3_checkpoint.sql h1:LR4UjDYVtrRuHLN5GQwLAYnXrSf/iO70psY8hTmLmjw=
4_fourth.sql h1:QvaneqKxg+3R+zNzCP/wW43XkECdHkUwEpxJKPICEP8=
5_checkpoint.sql h1:syyuaJb/hoMRO7MJlv4AMhYqMCoSb8ZgcHENO8RqN3I=
6_sixth.sql h1:JNhpyBtH7XKqGBNRHQ+AvM9IDpO08C3G/swWPHfLkfw=
"""


def encoded(files: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(name, text.encode()) for name, text in sorted(files.items())]


def sum_file(files: dict[str, str]) -> str:
    """atlas.sum for a file set, as `atlas migrate hash` writes it."""
    hashes = atlas.file_hashes(encoded(files))
    return f"h1:{atlas.directory_sum(hashes)}\n" + "".join(f"{n} h1:{h}\n" for n, h in hashes)


def test_the_sum_is_computed_as_atlas_computes_it() -> None:
    assert sum_file(ATLAS_FILES) == ATLAS_SUM
    atlas.verify(encoded(ATLAS_FILES), ATLAS_SUM)


def test_a_file_with_the_sum_ignore_directive_is_left_out_of_the_hashes() -> None:
    files = {"1_a.sql": "SELECT 1;\n", "2_b.sql": "-- atlas:sum ignore\nSELECT 2;\n", "3_c.sql": "SELECT 3;\n"}
    hashes = atlas.file_hashes(encoded(files))
    assert [name for name, _ in hashes] == ["1_a.sql", "3_c.sql"]
    edited = {**files, "2_b.sql": "-- atlas:sum ignore\nSELECT 22;\n"}
    assert atlas.file_hashes(encoded(edited)) == hashes  # its text is not covered (its name is)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.update({"4_fourth.sql": "create table `tbl_3` (`col` bigint);\n"}),
     r"migration file 4_fourth\.sql does not match its hash"),
    (lambda f: f.update({"7_extra.sql": "SELECT 1;\n"}), r"migration file 7_extra\.sql is not in atlas\.sum"),
    (lambda f: f.pop("6_sixth.sql"), r"atlas\.sum lists 6_sixth\.sql but the directory has no such file"),
])
def test_a_tampered_added_or_removed_file_is_refused_naming_it(change: Callable[[dict[str, str]], object],
                                                               message: str) -> None:
    files = dict(ATLAS_FILES)
    change(files)
    with pytest.raises(errors.InvalidSpecError, match=message):
        atlas.verify(encoded(files), ATLAS_SUM)


def test_a_hand_edited_sum_file_is_refused() -> None:
    edited = ATLAS_SUM.replace("6_sixth.sql h1:JNhp", "6_sixth.sql h1:XNhp")
    with pytest.raises(errors.InvalidSpecError, match=r"atlas\.sum was edited by hand"):
        atlas.verify(encoded(ATLAS_FILES), edited)
    with pytest.raises(errors.InvalidSpecError, match="first line"):
        atlas.verify(encoded(ATLAS_FILES), "not a sum\n")


def test_an_atlas_directory_loads_with_timestamp_versions_and_txmode(tmp_path: Path) -> None:
    files = {
        "20240105093000_create_accounts.sql": "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text);\n",
        "20240212120000_email_index.sql": ("-- atlas:txmode none\n\n"
                                           "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email ON accounts (email);\n"),
        "20240301080000.sql": "ALTER TABLE accounts ADD COLUMN name text;\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "atlas.sum").write_text(sum_file(files))
    loaded = source.load_directory(tmp_path)
    assert [(m.version, m.name, m.up.no_transaction) for m in loaded] == [
        ("20240105093000", "create_accounts", False), ("20240212120000", "email_index", True),
        ("20240301080000", "migration", False)]
    assert loaded[1].up.file == "20240212120000_email_index.sql"
    (tmp_path / "20240212120000_email_index.sql").write_text(files["20240212120000_email_index.sql"] + "-- x\n")
    with pytest.raises(errors.InvalidSpecError, match=r"20240212120000_email_index\.sql does not match"):
        source.load_directory(tmp_path)
