"""P10: the README's main command (`scripts/demo`), warm: wall time to a fully reconciled demo, per phase.

    python bench/demo_bench.py [--rounds 1] [--no-warmup]

Runs `scripts/demo --timings FILE` as a user does (after `scripts/setup`: the Go test bed and the venv exist;
the warm-up run fills the page cache and the embedded PostgreSQL cache), then `--rounds` measured runs. Each run
reports its phases (cluster up, helm install --wait, each example resource reconciled, the schedule's tick, the
verdict, teardown), the machine's load average before and after, and the figure: seconds from the command's start
to every resource reconciled and judged (the summary and teardown excluded; the command's whole wall time is
printed too). A run that exits non-zero is reported and fails the bench. Target ≤ 180 s. The last line is the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 180.0


def _commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "?"


def run_demo(label: str) -> dict[str, Any]:
    """One `scripts/demo` run: its timings (phases, reconciled and total seconds), load and wall time."""
    with tempfile.TemporaryDirectory(prefix="dbops-demo-bench-") as tmp:
        timings = Path(tmp) / "timings.json"
        log = Path(tmp) / "demo.log"
        load_before = os.getloadavg()[0]
        started = time.monotonic()
        with log.open("w") as out:
            code = subprocess.run([str(ROOT / "scripts" / "demo"), "--timings", str(timings)], cwd=ROOT,
                                  stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        wall = time.monotonic() - started
        result: dict[str, Any] = json.loads(timings.read_text()) if timings.exists() else {"phases": []}
        result.update(label=label, code=code, wall=wall, load=(load_before, os.getloadavg()[0]))
        if code != 0:
            print(log.read_text()[-4000:], file=sys.stderr)
    print(f"\n{label}: exit {code}, load {result['load'][0]:.1f} -> {result['load'][1]:.1f}, "
          f"command wall {wall:.1f} s, reconciled {result.get('reconciled_seconds') or float('nan'):.1f} s",
          flush=True)
    for phase, seconds in result["phases"]:
        print(f"  {seconds:7.1f} s  {phase}", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1, help="measured runs (default 1)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up run")
    args = parser.parse_args()
    print(f"P10 demo bench, commit {_commit()}, {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
    if not args.no_warmup:
        run_demo("warm-up")
    runs = [run_demo(f"round {i + 1}") for i in range(args.rounds)]
    failed = [r for r in runs if r["code"] != 0 or not r.get("reconciled_seconds")]
    if failed:
        print(f"P10: {len(failed)} of {len(runs)} demo runs failed (exit {[r['code'] for r in failed]})")
        return 1
    reconciled = statistics.median(r["reconciled_seconds"] for r in runs)
    wall = statistics.median(r["wall"] for r in runs)
    load = statistics.mean(sum(r["load"]) / 2 for r in runs)
    verdict = "within" if reconciled <= TARGET_SECONDS else "OVER"
    print(f"P10: scripts/demo warm, fully reconciled in {reconciled:.1f} s (median of {len(runs)}; command wall "
          f"{wall:.1f} s with summary and teardown; load {load:.1f} on {os.cpu_count()} CPUs): {verdict} the "
          f"{TARGET_SECONDS:.0f} s target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
