"""Admission and runner agree (target R19): what the API server admits, the operator reads, builds and runs.

Hypothesis draws specs of every kind from the CRD schemas (themselves generated from the pydantic models),
each with mutants (a leaf replaced by a value users get wrong, or a field dropped). Each case goes to the real
API server as a server-side dry-run create, and its verdict is compared with pydantic's:

- admitted by the API server => valid for pydantic, the Jobs/CronJob build, the runner's own argument parsing
  takes every runner container's args, the API server admits those Jobs/CronJob (dry-run), and a window's
  cron and time zone load;
- refused by the API server => refused by pydantic too: every CEL rule has its Python twin (api/base.py Rule),
  so the operator never acts on a spec the API server would refuse, and none is tolerated here.

Replay a run with DBOPS_FUZZ_SEED=<the printed seed>; DBOPS_FUZZ_EXAMPLES sets the number of drawn specs
(each with MUTANTS mutants; the default gives 2,000 cases).
"""

from __future__ import annotations

import copy
import json
import os
import random
import tempfile
import time
import zoneinfo
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tests.integration.admission import Admission
from tests.integration.spec_strategies import POOLS, cases

from dbops import errors
from dbops.api import migration_source as migration_api
from dbops.api.backup import DatabaseBackupSpec
from dbops.api.common import S3Storage, Storage
from dbops.api.kinds import ALL_KINDS, Kind
from dbops.api.migration import DatabaseMigrationSpec
from dbops.api.restore import DatabaseRestoreSpec
from dbops.api.schedule import DatabaseBackupScheduleSpec
from dbops.cli.main import check_arguments
from dbops.controller import migration as migration_controller
from dbops.reconcile import migration_rehearsal
from dbops.runner.migrations import source as migration_source
from dbops.specs import command_jobs, cronjobs, jobs, rehearsal_jobs
from dbops.specs.owner import Owner
from dbops_testbed.controlplane import ControlPlane

SEED = int(os.environ.get("DBOPS_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
MUTANTS = 4
EXAMPLES = int(os.environ.get("DBOPS_FUZZ_EXAMPLES") or 400)
IMAGE = "ghcr.io/dbops/dbops:0.1.0"
SIZE_GUARD_FLAGS = ("--row-count-exact-max-mb", "--orphan-scan-max-mb")  # verify.*Size, counted to show coverage
_GENERIC_MUTANTS: list[Any] = ["", "-x", "--help", " ", "x" * 300, -1, 0, 10**12, True, 1.5, None, [], {}]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _leaves(value, (*path, index))
    return found


def mutate(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A copy with one or two fields replaced by a pooled or generic bad value, or removed."""
    result = copy.deepcopy(spec)
    for _ in range(rng.choice((1, 1, 2))):
        paths = _leaves(result)
        if not paths:
            break
        path = rng.choice(paths)
        parent = result
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[last]
            continue
        field = next((p for p in reversed(path) if isinstance(p, str)), "")
        pool = [v for values in POOLS.values() for v in values] if rng.random() < 0.3 else _GENERIC_MUTANTS
        pool = POOLS.get(field, pool)
        parent[last] = copy.deepcopy(rng.choice(pool))
    return result


OWNERS = {kind.kind: Owner(kind=kind.kind, namespace="", name="fuzz", uid="00000000-fuzz", generation=1)
          for kind in ALL_KINDS}


def children(kind: Kind, model: Any, namespace: str) -> list[dict[str, Any]]:
    """Every Job/CronJob the operator could make from an admitted spec (the builders of specs/)."""
    owner = Owner(kind=kind.kind, namespace=namespace, name="fuzz", uid="00000000-fuzz", generation=1)
    artifact = "s3://bucket/ns/app/fuzz"
    if isinstance(model, DatabaseBackupSpec):
        return [jobs.build_backup_job(owner, model, image=IMAGE),
                jobs.build_verify_job(owner, model, artifact, image=IMAGE),
                jobs.build_delete_artifact_job(owner, model, artifact, image=IMAGE)]
    if isinstance(model, DatabaseRestoreSpec):
        storage = model.source.storage or Storage(s3=S3Storage(bucket="bucket"))
        return [jobs.build_restore_job(owner, model, storage, artifact, image=IMAGE)]
    if isinstance(model, DatabaseBackupScheduleSpec):
        return [cronjobs.build_trigger_cron_job(owner, model, image=IMAGE),
                jobs.build_backup_job(owner, model.backup_template.spec, image=IMAGE)]
    assert isinstance(model, DatabaseMigrationSpec)
    built = [jobs.build_check_job(owner, model, revision="r1", image=IMAGE)]
    if model.source.command is not None:
        built += [command_jobs.build_command_job(owner, model, revision="r1", image=IMAGE),  # with its snapshot
                  command_jobs.build_verify_db_job(owner, model, source_config_map="fuzz-src", revision="r1",
                                                   image=IMAGE)]
    else:
        built += [jobs.build_migration_job(owner, model, action, source_config_map="fuzz-src",
                                           migration_files=["0001_a.up.sql"], revision="r1", image=IMAGE,
                                           expect_plan_hash="0123456789abcdef", checks_file=bool(model.verify.checks))
                  for action in ("plan", "apply")]
        if model.rehearsal.enabled:
            job_input = rehearsal_jobs.RehearsalJobInput(
                artifact, Storage(s3=S3Storage(bucket="bucket")), "0123456789abcdef",
                migration_rehearsal.max_duration_seconds(model), migration_rehearsal.max_lock_bytes(model))
            built.append(rehearsal_jobs.build_rehearsal_job(
                owner, model, job_input, source_config_map="fuzz-src", migration_files=["0001_a.up.sql"],
                revision="r1", image=IMAGE, checks_file=bool(model.verify.checks)))
    return built


def _runner_args(manifest: dict[str, Any]) -> list[list[str]]:
    """The args of every container running ``dbops`` (the command Job's snapshot init container too)."""
    spec = manifest["spec"]["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else manifest["spec"]
    pod = spec["template"]["spec"]
    return [container["args"] for container in [*pod.get("initContainers", []), *pod["containers"]]
            if container.get("command") == ["dbops"]]


def _dry_run_child(api_client: Any, manifest: dict[str, Any]) -> str | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    batch: Any = client.BatchV1Api(api_client)
    create = batch.create_namespaced_cron_job if manifest["kind"] == "CronJob" else batch.create_namespaced_job
    try:
        create(manifest["metadata"]["namespace"], manifest, dry_run="All", _preload_content=False)
    except ApiException as error:
        if error.status not in (400, 422):
            raise
        return str(json.loads(error.body).get("message", error.body))
    except ValueError as error:  # the client's own model refused it (a pydantic ValidationError)
        return f"refused by the kubernetes client: {error}"
    return None


class Run:
    """Counts and disagreements of one fuzz run."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.admission = Admission(api_client, namespace)
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        self.reasons: Counter[str] = Counter()

    def check_batch(self, batch: list[tuple[Kind, dict[str, Any]]]) -> None:
        verdicts = list(self.pool.map(lambda case: self.admission.stored(case[0].kind, case[1]), batch))
        child_checks: list[tuple[Kind, dict[str, Any], dict[str, Any]]] = []
        for (kind, spec), (admitted, message, stored) in zip(batch, verdicts, strict=True):
            self.counts["cases"] += 1
            try:
                # The operator reads what the API server stored (defaults applied, nulls pruned).
                # Strict: JSON types as the API server has them (pydantic would read true as 1).
                model = kind.spec.model_validate(stored if admitted else spec, strict=True)
            except ValidationError as error:
                if admitted:
                    self._problem("admitted by the API server, refused by pydantic", kind, spec, str(error))
                self.counts["refused"] += 1
                self.reasons[str(error).splitlines()[1].split(".")[0] if admitted is False else "?"] += 1
                continue
            if not admitted:
                self._problem("valid for pydantic, refused by the API server", kind, spec, message)
                continue
            self.counts["admitted"] += 1
            try:
                built = children(kind, model, self.namespace)
                self._window(model)
                self._inline_source(model)
            except Exception as error:  # any failure here is the finding
                self._problem("admitted, but building its children failed", kind, spec, repr(error))
                continue
            for manifest in built:
                for args in _runner_args(manifest):
                    try:
                        check_arguments(args)
                        self.counts["runner argument checks"] += 1
                        self.counts["size guard flags"] += sum(flag in args for flag in SIZE_GUARD_FLAGS)
                    except errors.DbopsError as error:
                        self._problem(f"admitted, but the runner refuses its args {args}", kind, spec, str(error))
                child_checks.append((kind, spec, manifest))
        refusals = self.pool.map(lambda item: _dry_run_child(self.api_client, item[2]), child_checks)
        for (kind, spec, manifest), refusal in zip(child_checks, refusals, strict=True):
            self.counts["child dry-runs"] += 1
            if refusal:
                self._problem(f"admitted, but its {manifest['kind']} is refused", kind, spec, refusal)

    @staticmethod
    def _window(model: Any) -> None:
        window = getattr(model, "window", None)
        if window is not None:
            zone = zoneinfo.ZoneInfo(window.time_zone)
            croniter(window.schedule, datetime.now(UTC).astimezone(zone)).get_next(datetime)

    @staticmethod
    def _inline_source(model: Any) -> None:
        """The runner loads inline migrations from the files the controller renders: it must accept them."""
        source = getattr(model, "source", None)
        if getattr(source, "inline", None) is None:
            return
        try:
            files = migration_controller.source_files("fuzz", model)
        except errors.InvalidSpecError:
            # Admission compares plain numbers only: the operator refuses the others (InvalidSpec) before any Job.
            if migration_api.plain(source.inline):
                raise
            return
        with tempfile.TemporaryDirectory() as directory:
            for name, text in files.items():
                (Path(directory) / name).write_text(text)
            migration_source.load_directory(Path(directory), allow_gaps=model.allow_gaps)

    def _problem(self, what: str, kind: Kind, spec: dict[str, Any], detail: str) -> None:
        self.counts["disagreements"] += 1
        if len(self.problems) < 8 and not any(detail[:80] in known for known in self.problems):
            self.problems.append(f"{what}: {kind.kind} {json.dumps(spec, sort_keys=True)}\n    -> {detail[:600]}")


@pytest.fixture
def fuzz_namespace(installed_crds: ControlPlane, namespace: str) -> str:
    return namespace


def test_api_server_pydantic_and_runner_agree(fuzz_namespace: str, kube_client: Any) -> None:
    print(f"\nadmission fuzz: seed {SEED} (replay with DBOPS_FUZZ_SEED={SEED}), {EXAMPLES} drawn specs "
          f"x {1 + MUTANTS} cases")
    run = Run(kube_client, fuzz_namespace)
    started = time.monotonic()

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=("generate",))
    @given(case=cases(), mutation_seed=st.integers(0, 2**32 - 1))
    def examine(case: tuple[Kind, dict[str, Any]], mutation_seed: int) -> None:
        kind, spec = case
        rng = random.Random(mutation_seed)
        run.check_batch([(kind, spec), *((kind, mutate(spec, rng)) for _ in range(MUTANTS))])

    try:
        examine()
    finally:
        run.pool.shutdown()
    elapsed = time.monotonic() - started
    print(f"admission fuzz: {dict(run.counts)} in {elapsed:.0f}s")
    print(f"admission fuzz: most refused fields {run.reasons.most_common(12)}")
    assert not run.problems, f"seed {SEED}: {run.counts['disagreements']} disagreements, first ones:\n" + \
        "\n".join(run.problems)
    assert run.counts["cases"] >= 5 * EXAMPLES * 0.95
    assert run.counts["admitted"] >= run.counts["cases"] // 10, "too few admitted specs to prove anything"
