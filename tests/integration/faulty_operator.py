"""`dbops operator` that dies right after creating a Job, before writing status (crash-consistency tests)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from dbops.cli.main import main
from dbops.kube import objects

_create_or_adopt = objects.create_or_adopt


def _create_then_die(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    answer, created = _create_or_adopt(manifest)
    if created and manifest["kind"] == "Job":
        os._exit(137)  # like a SIGKILLed pod: no status patch, no cleanup
    return answer, created


objects.create_or_adopt = _create_then_die

if __name__ == "__main__":
    sys.exit(main())
