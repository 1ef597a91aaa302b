"""Upload progress by bytes: a rate-limited TCP proxy to MinIO that counts what it forwards, and the stored
size of a backup folder on directory storage; used to SIGKILL a runner at a chosen fraction of its upload."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path


class MeteredLink:
    """A TCP proxy to ``upstream`` forwarding client→server bytes at ``rate`` bytes/s and counting them."""

    def __init__(self, upstream: str, rate: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self._rate = rate
        self._lock = threading.Lock()
        self.sent = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.sent = 0

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upload: bool) -> None:
        chunk = 16 * 1024
        with contextlib.suppress(OSError):
            while data := source.recv(chunk):
                if upload:
                    time.sleep(len(data) / self._rate)
                    with self._lock:
                        self.sent += len(data)
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under a backup folder on directory storage (partial files included)."""
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(directory, name)).st_size
    return total


def kill_at(process: subprocess.Popen[str], progress: Callable[[], int], total: int, fraction: float,
            timeout: float = 600) -> float:
    """SIGKILL ``process`` once ``progress()`` reaches ``fraction`` of ``total`` bytes; the fraction reached.

    Fails when the process ends first (it committed before the kill: the fraction was missed)."""
    deadline = time.monotonic() + timeout
    while (done := progress()) < fraction * total:
        if process.poll() is not None:
            raise AssertionError(f"the runner ended at {done}/{total} bytes, before {fraction:.0%}: "
                                 f"exit {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out at {done}/{total} bytes waiting for {fraction:.0%}")
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return done / total


def _stopped(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2] in "TtZX"


def kill_at_stepped(process: subprocess.Popen[str], progress: Callable[[], int], total: int, fraction: float,
                    step: float = 0.002, timeout: float = 600) -> float:
    """Like :func:`kill_at` for a runner writing to local disk, which is too fast to catch by polling: the runner
    runs in slices of ``step`` s between SIGSTOPs, and is SIGKILLed while stopped once ``fraction`` is reached."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            process.send_signal(signal.SIGSTOP)
            while not _stopped(process.pid):
                time.sleep(0.0005)
            done = progress()
            if done >= fraction * total:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=60)
                return done / total
            if process.poll() is not None:
                raise AssertionError(f"the runner ended at {done}/{total} bytes, before {fraction:.0%}: "
                                     f"exit {process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out at {done}/{total} bytes waiting for {fraction:.0%}")
            process.send_signal(signal.SIGCONT)
            # Finer slices close to the target: a slice of a fast compressor writes ~1 % of a 10 MB dump.
            time.sleep(step if done < (fraction - 0.05) * total else step / 20)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
