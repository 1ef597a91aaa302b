"""Progress of long transfers on stderr: a live line on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

LOG_INTERVAL_ENV = "DBOPS_PROGRESS_INTERVAL"


def format_bytes(count: float) -> str:
    """A human size such as ``12.3 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class Progress:
    """Counts bytes of one transfer and reports them with the rate."""

    def __init__(self, label: str, *, total: int | None = None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()
        self._interval = 0.5 if self._live else float(os.environ.get(LOG_INTERVAL_ENV, "10"))
        self._started = time.monotonic()
        self._last = self._started

    def add(self, count: int) -> None:
        """Record ``count`` more bytes; report when the interval has passed."""
        self.done += count
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._report(now, final=False)

    def finish(self) -> None:
        """Report the final figures."""
        self._report(time.monotonic(), final=True)

    def _report(self, now: float, *, final: bool) -> None:
        elapsed = max(now - self._started, 1e-6)
        text = f"{self.label}: {format_bytes(self.done)} at {format_bytes(self.done / elapsed)}/s"
        if self.total:
            text += f" ({min(100.0, 100.0 * self.done / self.total):.0f}% of ~{format_bytes(self.total)})"
        if final:
            text += f" in {elapsed:.1f}s"
        if self._live:
            self._stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        elif final or now - self._started >= self._interval:
            self._stream.write(text + "\n")
        self._stream.flush()
