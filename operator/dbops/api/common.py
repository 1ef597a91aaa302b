"""Blocks shared by every kind: Secret references, database connection, storage, Job template."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from dbops.api import kubevalues
from dbops.api.base import ApiModel, Rule

# Re-exported: the duration helpers live without pydantic in dbops.api.durations.
from dbops.api.durations import DURATION_MAX_LENGTH as DURATION_MAX_LENGTH
from dbops.api.durations import DURATION_PATTERN as DURATION_PATTERN
from dbops.api.durations import POSTGRES_MAX_MS as POSTGRES_MAX_MS
from dbops.api.durations import duration_milliseconds as duration_milliseconds
from dbops.api.durations import parse_duration as parse_duration
from dbops.api.durations import postgres_duration as postgres_duration

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""RFC 1123 subdomain, as the API server checks object names: no '..', no '.-' or '-.'."""
ResourceName = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]
# A Secret/ConfigMap key: letters, digits, '-', '_' and '.', not "." nor starting with ".." (as the API server has it).
SecretKey = Annotated[str, StringConstraints(pattern=r"^\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$",
                                             min_length=1, max_length=253)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=DURATION_MAX_LENGTH)]
SqlIdentifier = Annotated[str, StringConstraints(min_length=1, max_length=255)]


def _postgres_timeout(value: str) -> str:
    postgres_duration(value)
    return value


_POSTGRES_TIMEOUT_RULE = (
    # The CEL twin of postgres_duration's bound: numbers above 18 digits are refused before int() could overflow,
    # and the sum is taken in doubles so no product overflows.
    "self == '0' || self.findAll('[0-9]+(ms|s|m|h|d|w)').all(p, p.find('[1-9][0-9]*').size() <= 18) && "
    "self.findAll('[0-9]+(ms|s|m|h|d|w)').map(p, (p.find('[1-9][0-9]*') == '' ? 0.0 : "
    "double(int(p.find('[1-9][0-9]*')))) * (p.endsWith('ms') ? 1.0 : p.endsWith('s') ? 1000.0 : "
    "p.endsWith('m') ? 60000.0 : p.endsWith('h') ? 3600000.0 : p.endsWith('d') ? 86400000.0 : 604800000.0))"
    f".sum() <= {POSTGRES_MAX_MS}.0"
)
PostgresTimeout = Annotated[
    Duration,
    AfterValidator(_postgres_timeout),
    Field(json_schema_extra={"x-kubernetes-validations": [{
        "rule": _POSTGRES_TIMEOUT_RULE,
        "message": "must be at most 24d20h31m23s (PostgreSQL's limit for lock_timeout and statement_timeout)",
    }]}),
]
"""A duration that becomes a PostgreSQL timeout: the API's grammar, at most INT_MAX milliseconds."""


class SecretKeySelector(ApiModel):
    """A key of a Secret in the resource's namespace."""

    name: ResourceName
    """Name of the Secret."""
    key: SecretKey
    """Key inside the Secret."""


class LocalObjectReference(ApiModel):
    """A reference to an object in the resource's namespace."""

    name: ResourceName
    """Name of the object."""


class DatabaseConnection(ApiModel):
    """How to reach PostgreSQL. Credentials come only from Secrets."""

    rules = (
        Rule("has(self.uriSecretRef) || (has(self.host) && has(self.name))",
             "set either uriSecretRef or both host and name",
             lambda m: m.uri_secret_ref is not None or (m.host is not None and m.name is not None)),
        Rule("!(has(self.user) && has(self.userSecretRef))", "set at most one of user and userSecretRef",
             lambda m: m.user is None or m.user_secret_ref is None),
    )

    uri_secret_ref: SecretKeySelector | None = None
    """A libpq URI in a Secret (e.g. CloudNativePG's app secret); the fields below override its parts."""
    host: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = None
    """Server host name."""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """Server port (default 5432)."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    """The database to connect to (overrides the URI's)."""
    user: Annotated[str, StringConstraints(min_length=1, max_length=63)] | None = None
    """The role to connect as (overrides the URI's); or userSecretRef."""
    user_secret_ref: SecretKeySelector | None = None
    """User name from a Secret."""
    password_secret_ref: SecretKeySelector | None = None
    """Password from a Secret."""
    ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    """libpq sslmode (disable … verify-full); unset: the URI's, else libpq's default (prefer)."""


class S3Storage(ApiModel):
    """An S3-compatible bucket."""

    bucket: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
    """The bucket (it must exist; dbops does not create it)."""
    prefix: Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\s]*$")] = ""
    """Key prefix under which artifacts are stored."""
    endpoint: Annotated[str, StringConstraints(pattern=r"^https?://[^\s@]+$", max_length=512)] | None = None
    """Endpoint URL for S3-compatible stores (MinIO, Ceph…); no credentials in it."""
    region: Annotated[str, StringConstraints(max_length=64)] | None = None
    """The bucket's region (e.g. eu-central-1); unset: the SDK's default."""
    force_path_style: bool = False
    """Use path-style addressing (most S3-compatible stores need it)."""
    credentials_secret_ref: LocalObjectReference | None = None
    """Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; absent means workload identity."""
    abort_incomplete_uploads_after: Duration | None = None
    """Before each backup and when a backup is deleted, abort incomplete multipart uploads under that backup's
    own folder older than this (left by killed runs; billed until aborted). Default 24h; 0s turns it off.
    Other prefixes are never touched; a bucket lifecycle rule is the belt-and-braces option."""


class PvcStorage(ApiModel):
    """A directory on a PersistentVolumeClaim."""

    claim_name: ResourceName
    """Name of the PersistentVolumeClaim."""
    path: Annotated[str, StringConstraints(max_length=512, pattern=r"^[^\s]*$")] = ""
    """Sub-directory inside the volume."""


class Storage(ApiModel):
    """Where artifacts are stored: exactly one of s3 or pvc."""

    rules = (Rule("has(self.s3) != has(self.pvc)", "set exactly one storage backend: s3 or pvc",
                  lambda m: (m.s3 is None) != (m.pvc is None)),)

    s3: S3Storage | None = None
    """An S3-compatible bucket."""
    pvc: PvcStorage | None = None
    """A directory on a PersistentVolumeClaim the Jobs mount."""


_TOLERATION_KEY = kubevalues.qualified_name_cel("self.key")


class Toleration(ApiModel):
    """A pod toleration."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": f"!has(self.key) || self.key == '' || {_TOLERATION_KEY}",
                 "message": "key must be a qualified name, e.g. dedicated or example.com/pool", "fieldPath": ".key"},
                {"rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
                 "message": "operator must be Exists when key is empty", "fieldPath": ".operator"},
                {"rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                 "message": "value must be empty when operator is Exists", "fieldPath": ".value"},
                {"rule": "(has(self.operator) && self.operator == 'Exists') || !has(self.value) || "
                         f"self.value.matches(r'{kubevalues.LABEL_VALUE}')",
                 "message": "value must be a label value (at most 63 letters, digits, '-', '_' or '.')",
                 "fieldPath": ".value"},
                {"rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                 "message": "tolerationSeconds needs effect: NoExecute", "fieldPath": ".tolerationSeconds"},
            ]
        }
    }

    key: Annotated[str, StringConstraints(max_length=317)] | None = None
    """The taint key it matches; empty with operator Exists: every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists (any value) or Equal (value must match; the default)."""
    value: Annotated[str, StringConstraints(max_length=63)] | None = None
    """The taint value to match with operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect it matches; empty: every effect."""
    toleration_seconds: int | None = None
    """Seconds a NoExecute toleration lasts."""

    @model_validator(mode="after")
    def _as_kubernetes_checks(self) -> Toleration:
        if self.key:
            problem = kubevalues.qualified_name_problem(self.key)
            if problem:
                raise ValueError(f"toleration key {problem}")
        elif self.operator != "Exists":
            raise ValueError("toleration operator must be Exists when key is empty")
        if self.operator == "Exists" and self.value:
            raise ValueError("toleration value must be empty when operator is Exists")
        if self.operator != "Exists" and self.value is not None and not kubevalues.label_value(self.value):
            raise ValueError(f"toleration value {self.value!r} must be a label value")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect: NoExecute")
        return self


class ResourceRequirements(ApiModel):
    """Container resource requests and limits."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [{
                "rule": kubevalues.REQUESTS_WITHIN_LIMITS, "message": "a request must not exceed its limit",
                "fieldPath": ".requests",
            }]
        }
    }

    requests: kubevalues.ResourceMap | None = None
    """Requests of cpu, memory or ephemeral-storage, e.g. cpu: 100m, memory: 128Mi."""
    limits: kubevalues.ResourceMap | None = None
    """Limits of cpu, memory or ephemeral-storage, e.g. memory: 1Gi (at least the requests)."""

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        kubevalues.requests_within_limits(self.requests, self.limits)
        return self


class JobTemplate(ApiModel):
    """Overrides for every Job a resource spawns."""

    image: Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\s]+$")] | None = None
    """Runner image; defaults to the operator's configured image."""
    resources: ResourceRequirements | None = None
    """Requests and limits of the Jobs' container."""
    node_selector: kubevalues.LabelMap | None = None
    """Labels a node must have to run the Jobs' pods."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Taints the Jobs' pods tolerate."""
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Deadline of each Job."""
    backoff_limit: Annotated[int, Field(ge=0, le=20)] | None = None
    """Retries of each Job (default 1)."""
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Seconds after which finished Jobs are deleted, counted once the operator recorded their result (it sets the
    Jobs' ttlSecondsAfterFinished when the resource finishes, so no result is lost to an early deletion)."""
    pod_labels: kubevalues.LabelMap | None = None
    """Extra pod labels."""
    pod_annotations: kubevalues.AnnotationMap | None = None
    """Extra pod annotations."""


# The one model of a SQL check: the CRDs' ``checks`` and the runner's --checks-json/--checks-file.
class SqlCheck(ApiModel):
    """A SQL query with an expectation, e.g. the runbook's orphaned-bookings query expecting 0 rows."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    """Name shown in status."""
    sql: Annotated[str, StringConstraints(min_length=1, max_length=65536)]
    """A read-only query."""
    expect: CheckExpectation
    """What the query must return."""


class CheckExpectation(ApiModel):
    """The expectation of a SQL check; exactly one field."""

    rules = (Rule("[has(self.rows), has(self.min), has(self.max), has(self.equals)].filter(x, x).size() >= 1",
                  "set at least one of rows, min, max, equals",
                  lambda m: any(v is not None for v in (m.rows, m.min, m.max, m.equals))),)

    rows: Annotated[int, Field(ge=0)] | None = None
    """Exact number of rows returned."""
    min: float | None = None
    """Minimum of the single value returned."""
    max: float | None = None
    """Maximum of the single value returned."""
    equals: Annotated[str, StringConstraints(max_length=1024)] | None = None
    """The single value returned, as text."""

    @model_validator(mode="after")
    def _one_expectation(self) -> CheckExpectation:
        # The pydantic twin of the CEL rule above.
        if self.rows is None and self.min is None and self.max is None and self.equals is None:
            raise ValueError("set at least one of rows, min, max, equals")
        return self


SqlCheck.model_rebuild()


def check_unique(values: list[Any], what: str) -> list[Any]:
    """Reject duplicates in a list field."""
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what}: {value}")
        seen.add(value)
    return values

