"""Kubernetes Events about dbops resources (messages are redacted before they are posted)."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from dbops.kube import session as kube_session
from dbops.kube.resources import resource_type
from dbops.redaction import redact

COMPONENT = "dbops-operator"
MAX_MESSAGE = 1024
logger = logging.getLogger(__name__)


def emit(involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Post an Event about an object ({apiVersion, kind, namespace, name, uid}); failures are only logged."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    namespace = involved["namespace"]
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{involved['name'][:200]}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": involved,
        "type": type_,
        "reason": reason,
        "message": redact(message)[:MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube_session.session().request("POST", resource_type("Event").path(namespace), body=event)
    except Exception as error:  # an Event is best effort
        logger.warning("could not post event %s for %s/%s: %s", reason, namespace, involved["name"], error)
