"""The Kopf registry holding every dbops handler (so the operator runs exactly these)."""

from __future__ import annotations

import kopf

REGISTRY = kopf.OperatorRegistry()
