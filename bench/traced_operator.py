"""`dbops operator` under tracemalloc: SIGUSR1 dumps a heap snapshot to $DBOPS_TRACEMALLOC_DIR/<n>.snapshot."""

from __future__ import annotations

import os
import signal
import sys
import threading
import tracemalloc
from pathlib import Path
from types import FrameType

from dbops.cli.main import main

_count = 0


def _dump(_signum: int, _frame: FrameType | None) -> None:
    global _count
    _count += 1
    path = Path(os.environ["DBOPS_TRACEMALLOC_DIR"]) / f"{_count}.snapshot"
    # A thread: taking the snapshot in the signal handler would stall the event loop mid-callback.
    threading.Thread(target=lambda: tracemalloc.take_snapshot().dump(str(path)), daemon=True).start()


if __name__ == "__main__":
    tracemalloc.start(1)  # the allocating line is enough for the report, and far cheaper
    signal.signal(signal.SIGUSR1, _dump)
    sys.exit(main())
