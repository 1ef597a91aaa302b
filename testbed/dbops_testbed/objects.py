"""JSON helpers shared by the simulated node's modules: the JSON type, response bodies, kubelet timestamps."""

from __future__ import annotations

import datetime
import json
from typing import Any

JSON = dict[str, Any]


def response_json(response: Any) -> JSON:
    """The JSON body of a kubernetes client call made with `_preload_content=False`."""
    data: JSON = json.loads(response.data)
    return data


def now() -> str:
    """The current time as the kubelet writes it in statuses (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
