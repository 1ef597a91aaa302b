"""Credential redaction and the runner's result protocol."""

from __future__ import annotations

import json

import pytest

from dbops import errors
from dbops.redaction import redact
from dbops.runner import result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:s3cr3t@db:5432/x", "postgresql://app:****@db:5432/x"),
        ("failed: postgres://u:p%40ss@h/db?sslmode=require", "failed: postgres://u:****@h/db?sslmode=require"),
        ("host=db password=s3cr3t user=app", "host=db password=**** user=app"),
        ("host=db password='a b' user=app", "host=db password=**** user=app"),
        ("postgresql://h/db?user=a&password=zzz", "postgresql://h/db?user=a&password=****"),
        ("no credentials here", "no credentials here"),
    ],
)
def test_redact_masks_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_given_secret_values_anywhere() -> None:
    assert redact("auth failed for canary-PW-123 today", "canary-PW-123") == "auth failed for **** today"


def test_failure_result_is_redacted_and_carries_exit_code() -> None:
    doc = result.failure("backup", errors.AuthenticationError("cannot connect to postgresql://a:pw@h/db"))
    assert doc["exitCode"] == result.ExitCode.USER_ERROR
    assert doc["reason"] == "AuthenticationFailed"
    assert "pw@" not in doc["message"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.VerificationError("x"), result.ExitCode.VERIFICATION_FAILED),
        (errors.LockTimeoutError("x"), result.ExitCode.TRANSIENT_ERROR),
        (errors.NotFoundError("x"), result.ExitCode.USER_ERROR),
        (RuntimeError("x"), result.ExitCode.INTERNAL_ERROR),
    ],
)
def test_exit_codes(error: BaseException, code: result.ExitCode) -> None:
    assert result.exit_code_for(error) == code


def test_large_results_are_truncated_to_4_kib_keeping_the_essentials() -> None:
    doc = result.success("backup", "ok", tables=[{"name": f"table_{i}", "rows": i} for i in range(2000)])
    data = result.encode_result(doc)
    assert len(data) <= result.MAX_RESULT_BYTES
    decoded = json.loads(data)
    assert decoded["ok"] is True and decoded["truncated"] is True
    assert decoded["tables"][0] == {"name": "table_0", "rows": 0}
    assert decoded["tables"][-1].startswith("... ")


def test_small_results_are_untouched() -> None:
    doc = result.success("verify", "ok", verification={"decoded": True})
    assert json.loads(result.encode_result(doc)) == doc


def test_emit_writes_the_result_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "result.json"
    code = result.emit(result.failure("restore", errors.NotFoundError("database x does not exist")), "restore failed", path)
    assert code == 2
    assert json.loads(path.read_text())["message"] == "database x does not exist"
    assert "restore failed" in capsys.readouterr().err


def test_fits_says_whether_encode_result_keeps_a_result_whole() -> None:
    small = result.success("migrate apply", "done", applied=[{"version": "0001"}])
    large = result.success("migrate apply", "done", applied=[{"version": f"{n:04d}", "name": "x" * 40}
                                                             for n in range(200)])
    assert result.fits(small) and "truncated" not in json.loads(result.encode_result(small))
    assert not result.fits(large) and json.loads(result.encode_result(large))["truncated"] is True
    edge = result.success("x", "m", pad="")
    edge["pad"] = "y" * (result.MAX_RESULT_BYTES - len(result.encode_result(edge)))
    assert len(result.encode_result(edge)) == result.MAX_RESULT_BYTES and result.fits(edge)
    edge["pad"] += "y"
    assert not result.fits(edge)
