"""The `dbops operator` command: run the Kopf operator in-process with the dbops handlers."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from typing import Any

from dbops.specs.jobs import DEFAULT_IMAGE

HANDLER_MODULES = ("dbops.controller.startup", "dbops.controller.handlers")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the `operator` subcommand."""
    parser = subparsers.add_parser("operator", help="run the dbops operator (Kopf)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--image", default=os.environ.get("DBOPS_IMAGE") or DEFAULT_IMAGE,
                        help="runner image for Jobs (env DBOPS_IMAGE)")
    parser.add_argument("--metrics-port", type=int, default=8080, help="port of /metrics (0: off)")
    parser.add_argument("--health-port", type=int, default=8081, help="port of /healthz (0: off)")
    parser.add_argument("--recheck-seconds", type=float, default=30.0,
                        help="re-read unfinished resources this often (0: only on events)")
    parser.add_argument("--stall-seconds", type=float, default=600.0,
                        help="a retried error (API server unreachable, missing Secret) shows on the resource after "
                             "this long; a missing reference then fails it")
    parser.add_argument("--start-grace-seconds", type=float, default=180.0,
                        help="a Job's pod that cannot pull its image or read its env (a missing Secret key) this "
                             "long fails the resource (ImagePullFailed, ContainerConfigError)")
    parser.add_argument("--workers", type=int, default=16, help="handler threads")
    parser.add_argument("--job-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a plain env var for every runner container (repeatable; never credentials)")
    parser.add_argument("--trigger-cluster-role", default=os.environ.get("DBOPS_TRIGGER_CLUSTER_ROLE", ""),
                        metavar="NAME",
                        help="bind schedules' trigger ServiceAccounts to this installed ClusterRole (the chart's "
                             "and kustomize's) instead of writing a Role per schedule; env DBOPS_TRIGGER_CLUSTER_ROLE")
    parser.add_argument("--log-format", choices=("json", "plain"), default="json")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import kopf

    from dbops.controller import config

    config.CONFIG.image = args.image
    config.CONFIG.namespaces = list(args.namespace)
    config.CONFIG.metrics_port = args.metrics_port
    config.CONFIG.health_port = args.health_port
    config.CONFIG.recheck_seconds = args.recheck_seconds
    config.CONFIG.stall_seconds = args.stall_seconds
    config.CONFIG.start_grace_seconds = args.start_grace_seconds
    config.CONFIG.max_workers = args.workers
    config.CONFIG.job_env = dict(item.split("=", 1) for item in args.job_env)
    config.CONFIG.trigger_cluster_role = args.trigger_cluster_role
    for module in HANDLER_MODULES:
        importlib.import_module(module)
    from dbops.controller.discovery import INSIGHTS
    from dbops.controller.registry import REGISTRY

    # Kopf's identity asks getpass for the user name, which fails for a UID without a passwd entry (OpenShift's
    # restricted-v2 assigns arbitrary UIDs); getpass reads $USER first.
    os.environ.setdefault("USER", "dbops")
    kopf.configure(verbose=args.verbose,
                   log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    kopf.run(
        registry=REGISTRY,
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=liveness,
        insights=INSIGHTS,
    )
    return 0
