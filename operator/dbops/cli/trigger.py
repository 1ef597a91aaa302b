"""The `dbops trigger backup` command: run by a schedule's CronJob pod, it creates one DatabaseBackup."""

from __future__ import annotations

import argparse
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbops import errors
from dbops.api.base import API_VERSION
from dbops.api.schedule import DatabaseBackupScheduleSpec
from dbops.runner import result
from dbops.specs import naming
from dbops.specs.owner import Owner

SCHEDULE_LABEL = "dbops.io/schedule"
PARENT_ANNOTATION = "dbops.io/parent"
SCHEDULED_TIME_ANNOTATION = "dbops.io/scheduled-time"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_CRON_POD_NAME = re.compile(r"-(?P<minutes>[0-9]{8,})-[a-z0-9]{5}$")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `trigger` subcommand."""
    parser = subparsers.add_parser("trigger", help="create a DatabaseBackup for a schedule (run by its CronJob)")
    actions = parser.add_subparsers(dest="trigger_action", required=True, metavar="ACTION")
    backup = actions.add_parser("backup", help="create the DatabaseBackup for this scheduled time")
    backup.add_argument("--schedule", required=True, help="name of the DatabaseBackupSchedule")
    backup.add_argument("--namespace", default=None, help="namespace (default: $DBOPS_NAMESPACE or the pod's)")
    backup.add_argument("--scheduled-time", default=None,
                        help="ISO time of the run (default: from the CronJob's pod name, else now)")
    backup.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster service account)")
    backup.add_argument("--result-path", type=Path, default=None)
    backup.set_defaults(run=_run)


def scheduled_time(pod_name: str, now: datetime) -> datetime:
    """The scheduled time encoded by the CronJob controller in its Job (and so pod) names, else ``now``."""
    match = _CRON_POD_NAME.search(pod_name)
    if match:
        return datetime.fromtimestamp(int(match["minutes"]) * 60, UTC)
    return now.replace(second=0, microsecond=0)


def backup_name(schedule: str, when: datetime) -> str:
    """The deterministic name of the backup of a schedule at a time: ``<schedule>-YYYYMMDD-HHMM``."""
    return naming.truncated_name(schedule, when.astimezone(UTC).strftime("%Y%m%d-%H%M"))


def backup_manifest(schedule_body: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The DatabaseBackup a schedule creates for one scheduled time."""
    owner = Owner.from_body(schedule_body)
    spec = DatabaseBackupScheduleSpec.model_validate(schedule_body["spec"])
    template_metadata = spec.backup_template.metadata
    labels = {**((template_metadata.labels if template_metadata else None) or {}), **owner.parent_labels(),
              SCHEDULE_LABEL: owner.name[:63]}
    annotations = {**((template_metadata.annotations if template_metadata else None) or {}),
                   PARENT_ANNOTATION: f"{owner.kind}/{owner.name}", SCHEDULED_TIME_ANNOTATION: when.isoformat()}
    return {
        "apiVersion": API_VERSION, "kind": "DatabaseBackup",
        "metadata": {"name": backup_name(owner.name, when), "namespace": owner.namespace, "labels": labels,
                     "annotations": annotations},
        "spec": spec.backup_template.spec.to_wire(),
    }


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    if os.environ.get("DBOPS_NAMESPACE"):
        return os.environ["DBOPS_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    raise errors.InvalidSpecError("no namespace: pass --namespace or set DBOPS_NAMESPACE")


def _create(manifest: dict[str, Any]) -> bool:
    """Create the backup; False when a previous attempt already did (the name is deterministic)."""
    from dbops.kube import session as kube_session
    from dbops.kube.resources import resource_type

    path = resource_type("DatabaseBackup").path(manifest["metadata"]["namespace"])
    try:
        kube_session.session().request("POST", path, body=manifest)
    except kube_session.ApiError as error:
        if error.status == 409:
            return False
        raise
    return True


def _when(text: str | None) -> datetime:
    """The scheduled time: ``--scheduled-time`` (checked before anything is contacted), else from the pod."""
    if not text:
        return scheduled_time(os.environ.get("DBOPS_POD_NAME", ""), datetime.now(UTC))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise errors.InvalidSpecError(
            f"--scheduled-time {text!r} is not an ISO 8601 time (e.g. 2026-11-29T02:00:00+00:00)") from None


def _run(args: argparse.Namespace) -> int:
    from dbops.kube import objects
    from dbops.kube import session as kube_session

    command = "trigger backup"
    try:
        when = _when(args.scheduled_time)
        kube_session.configure(args.kubeconfig)
        namespace = _namespace(args)
        schedule = objects.get("DatabaseBackupSchedule", namespace, args.schedule)
        if schedule is None:
            raise errors.MissingReferenceError(f"DatabaseBackupSchedule {args.schedule} not found in {namespace}")
        manifest = backup_manifest(schedule, when)
        created = _create(manifest)
    except Exception as error:
        document = result.failure(command, error)
        return result.emit(document, f"dbops {command} failed: {document['message']}", args.result_path)
    name = manifest["metadata"]["name"]
    message = f"{'created' if created else 'already existed'}: DatabaseBackup {name}"
    document = result.success(command, message, backupName=name, created=created, scheduledTime=when.isoformat())
    return result.emit(document, f"dbops {command}: {message}", args.result_path)
