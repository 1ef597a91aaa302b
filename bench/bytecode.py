"""Compile dbops's modules to bytecode as ``pip install`` does in the image, so a bench times dbops as deployed.

The image installs dbops with pip, which writes ``__pycache__/*.pyc`` for every module (whatever
``PYTHONDONTWRITEBYTECODE`` says; the image's root filesystem is read-only at run time, so nothing is compiled
then). A development checkout is an editable install, and where ``PYTHONDONTWRITEBYTECODE=1`` is set (the test
machine, the image's own environment) every ``dbops`` process would compile its ~50 modules from source again:
≈ 50 ms of CPU that no Job pays. Python checks each ``.pyc`` against its source's mtime and size, so a stale
one is never used.
"""

from __future__ import annotations

import subprocess
import sys

_COMPILE = "import compileall, os, dbops; compileall.compile_dir(os.path.dirname(dbops.__file__), quiet=1)"


def compile_dbops() -> None:
    """Write the ``.pyc`` files of the ``dbops`` package the benches' ``sys.executable`` imports."""
    subprocess.run([sys.executable, "-c", _COMPILE], check=True)
