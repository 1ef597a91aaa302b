"""What ``dbops migrate`` prints: the result as JSON, lint findings as SARIF or GitHub annotations.

The full result goes to ``--output FILE``; the result file/termination message stays capped at 4 KiB."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dbops.api import plan_report
from dbops.runner import result

FORMATS = ("json", "sarif", "github")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format``, ``--output`` and ``--result-path``."""
    parser.add_argument("--format", choices=FORMATS, default="json",
                        help="stdout: the full result as JSON (default), lint findings as SARIF 2.1.0 "
                             "(code scanning) or as GitHub workflow annotations")
    parser.add_argument("--output", type=Path, help="also write the full, uncut result JSON to this file")
    parser.add_argument("--report-line", action="store_true",
                        help="print the full result as one framed line (`dbops.io/plan-report v1 <sha256> <JSON>`) "
                             "instead of the indented JSON: the operator reads it back from the Job's pod log")
    add_result_path(parser)


def add_result_path(parser: argparse.ArgumentParser) -> None:
    """``--result-path``, as every runner command has it."""
    parser.add_argument("--result-path", type=Path, metavar="PATH",
                        help="write the JSON result (at most 4 KiB) here (default: $DBOPS_RESULT_PATH, "
                             "else /dev/termination-log in a pod)")


def publish(document: dict[str, Any], args: argparse.Namespace, summary: str) -> int:
    """Print the document in the chosen format, write ``--output``, and emit the capped result."""
    output: Path | None = getattr(args, "output", None)
    full = json.dumps(document, indent=1, default=str)
    if output is not None:
        output.write_text(full + "\n", encoding="utf-8")
    chosen = getattr(args, "format", "json")
    framed = bool(getattr(args, "report_line", False))
    if framed:
        print(plan_report.frame(document), flush=True)
    elif chosen == "sarif":
        print(json.dumps(sarif(document, getattr(args, "source", None)), indent=1))
    elif chosen == "github":
        print("\n".join(github_annotations(document, getattr(args, "source", None))))
    else:
        print(full)
    capped = document
    if not result.fits(document):
        where = (str(output) if output is not None else "the plan report line of the Job's pod log" if framed
                 else "the JSON on stdout (the Job's pod log)")
        capped = {**document, "fullResult": where}
        capped["message"] = f"{document['message']} (result cut to 4 KiB; complete in {where})"
        summary = f"{summary} (complete result in {where})"
    return result.emit(capped, summary, getattr(args, "result_path", None))


def findings(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The lint findings of a plan/apply result."""
    plan = document.get("plan") or {}
    return [f for f in plan.get("lint", []) if isinstance(f, dict)]


def _path(finding: dict[str, Any], source: Path | None) -> str:
    """The finding's file relative to the working directory (a CI job runs at the repository's root), so code
    scanning and annotations find it in the repository; an absolute path only outside it."""
    file = str(finding.get("file") or f"{finding.get('version', '?')}.sql")
    if source is None:
        return file
    path = source / file
    if path.is_absolute():
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            return path.as_uri()
    return path.as_posix()


def sarif(document: dict[str, Any], source: Path | None = None) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one result per lint finding (and the failure, when the command failed)."""
    items = findings(document)
    rules = sorted({str(f["rule"]) for f in items})
    results = [{
        "ruleId": f["rule"],
        "level": "error" if f.get("level") == "error" else "warning",
        "message": {"text": f["message"]},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": _path(f, source)},
                                            "region": {"startLine": max(int(f.get("line") or 1), 1)}}}],
        "properties": {"version": f.get("version"), "destructive": bool(f.get("destructive"))},
    } for f in items]
    invocation: dict[str, Any] = {"executionSuccessful": bool(document.get("ok"))}
    if not document.get("ok"):
        invocation["toolExecutionNotifications"] = [{
            "level": "error", "message": {"text": f"{document.get('reason')}: {document.get('message')}"},
        }]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "dbops", "informationUri": "https://github.com/sbdchd/squawk",
                                "rules": [{"id": rule} for rule in rules]}},
            "invocations": [invocation],
            "results": results,
        }],
    }


def github_annotations(document: dict[str, Any], source: Path | None = None) -> list[str]:
    """``::error file=…,line=…,title=…::message`` lines for a GitHub Actions log."""
    lines = []
    for f in findings(document):
        level = "error" if f.get("level") == "error" else "warning"
        lines.append(f"::{level} file={_property(_path(f, source))},line={int(f.get('line') or 1)},"
                     f"title={_property(str(f['rule']))}::{_data(str(f['message']))}")
    if not document.get("ok"):
        lines.append(f"::error title={_property(str(document.get('reason')))}::{_data(str(document.get('message')))}")
    return lines


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
