"""Values the API server checks on the Jobs and CronJobs dbops makes, checked at admission instead.

Each type carries a pydantic check and its CEL twin, so a spec the API server admits never makes a child object
that the API server then refuses (a label key ``bad key!``, a quantity ``1GBB``, a time zone ``Mars/Base``).
"""

from __future__ import annotations

import re
from decimal import MAX_EMAX, MIN_EMIN, ROUND_UP, Context, Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

from dbops.api.timezones import ZONES

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = rf"^({_DNS_LABEL}(\.{_DNS_LABEL})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"


def qualified_name_cel(variable: str) -> str:
    """The CEL twin of qualified_name_problem for the string ``variable``."""
    return (f"{variable}.matches(r'{_QUALIFIED_NAME}') && "
            f"({variable}.indexOf('/') < 0 || {variable}.indexOf('/') <= 253)")


def label_value(value: str) -> bool:
    """Whether ``value`` is a Kubernetes label value."""
    return re.fullmatch(LABEL_VALUE, value) is not None


_QUALIFIED_NAME_CEL = qualified_name_cel("k")


def _rules(*rules: tuple[str, str]) -> Any:
    return Field(json_schema_extra={"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]})


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (label, annotation, node selector or taint key)."""
    if not re.fullmatch(_QUALIFIED_NAME, key) or ("/" in key and key.index("/") > 253):
        return (f"{key!r} is not a valid key: an optional DNS prefix and '/', then up to 63 letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit")
    return None


def _keys(mapping: dict[str, str] | None, *, label_values: bool) -> dict[str, str] | None:
    for key, value in (mapping or {}).items():
        problem = qualified_name_problem(key)
        if problem:
            raise ValueError(problem)
        if label_values and not label_value(value):
            raise ValueError(f"label value {value!r} of {key!r} must be at most 63 letters, digits, '-', '_' or "
                             "'.', starting and ending with a letter or digit")
    return mapping


def _labels(mapping: dict[str, str] | None) -> dict[str, str] | None:
    return _keys(mapping, label_values=True)


def _annotations(mapping: dict[str, str] | None) -> dict[str, str] | None:
    return _keys(mapping, label_values=False)


LabelMap = Annotated[
    dict[str, Annotated[str, StringConstraints(max_length=63)]], Field(max_length=64), AfterValidator(_labels),
    _rules((f"self.all(k, {_QUALIFIED_NAME_CEL})", "label keys must be qualified names, e.g. team or example.com/team"),
           (f"self.all(k, self[k].matches(r'{LABEL_VALUE}'))",
            "label values must be at most 63 letters, digits, '-', '_' or '.', starting and ending with one")),
]
"""Labels or a node selector: qualified-name keys, label values."""
AnnotationMap = Annotated[
    dict[str, Annotated[str, StringConstraints(max_length=4096)]], Field(max_length=64), AfterValidator(_annotations),
    _rules((f"self.all(k, {_QUALIFIED_NAME_CEL})",
            "annotation keys must be qualified names, e.g. note or example.com/note")),
]
"""Annotations: qualified-name keys, any values."""

# resource.Quantity's grammar, without the sign: requests and limits are never negative.
_QUANTITY = re.compile(r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_MULTIPLIERS = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal("1e3"),
    "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
    **{f"{p}i": Decimal(1024) ** (i + 1) for i, p in enumerate("KMGTPE")},
}
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")
INT64_MAX = Decimal(2**63 - 1)
_WIDE = Context(prec=100, Emax=MAX_EMAX, Emin=MIN_EMIN)


def quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity (``100m``, ``1.5Gi``, ``1e3``); ValueError when it is not one.

    As resource.ParseQuantity: an exponent is read as int64 and kept as an int32 (``1e999999999`` is a valid,
    enormous quantity), binary sizes are capped at the largest int64, non-zero values round up to 1n. Whoever
    turns a value into an int caps it first (``capped_int``)."""
    match = _QUANTITY.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a non-negative quantity such as 100m, 0.5, 256Mi or 1G")
    suffix = match["suffix"] or ""
    number = Decimal(text[:len(text) - len(suffix)].lstrip("+") or "0")
    if suffix[:1] in ("e", "E") and len(suffix) > 1 and suffix[1] != "i":  # 2E is exa, 2Ei exbi, 2e3 an exponent
        power = int(suffix[1:])
        if not -2**63 <= power < 2**63:
            raise ValueError(f"{text!r} is not a quantity Kubernetes can hold (its exponent exceeds int64)")
        value = number.scaleb((power + 2**31) % 2**32 - 2**31, context=_WIDE)
    else:
        value = _WIDE.multiply(number, _MULTIPLIERS[suffix])
        if suffix.endswith("i"):
            value = min(value, INT64_MAX)
    digits = value.as_tuple().exponent
    if value > 0 and isinstance(digits, int) and digits < -9:  # finer than 1n
        value = value.quantize(Decimal("1e-9"), rounding=ROUND_UP, context=_WIDE)
    return value


def capped_int(value: Decimal) -> int:
    """The whole part of a quantity, at most the largest int64 (``1e999999999`` would have a billion digits)."""
    return int(min(value, INT64_MAX))


def _resources(mapping: dict[str, str] | None) -> dict[str, str] | None:
    for name, value in (mapping or {}).items():
        if name not in RESOURCE_NAMES:
            raise ValueError(f"resource {name!r} is not one of {', '.join(RESOURCE_NAMES)}")
        quantity(value)
    return mapping


ResourceMap = Annotated[
    dict[str, Annotated[str, StringConstraints(max_length=64)]], Field(max_length=3), AfterValidator(_resources),
    _rules((f"self.all(k, k in {list(RESOURCE_NAMES)})", f"resources are {', '.join(RESOURCE_NAMES)}"),
           ("self.all(k, isQuantity(self[k]) && !self[k].startsWith('-'))",
            "must be non-negative quantities such as 100m, 0.5, 256Mi or 1G")),
]
"""Requests or limits of cpu, memory and ephemeral-storage."""

REQUESTS_WITHIN_LIMITS = (
    "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
    "!isQuantity(self.requests[k]) || !isQuantity(self.limits[k]) || "
    "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) <= 0)"
)


def requests_within_limits(requests: dict[str, str] | None, limits: dict[str, str] | None) -> None:
    """Raise ValueError when a request exceeds its limit (the API server refuses such a pod)."""
    for name, value in (requests or {}).items():
        if limits and name in limits and quantity(value) > quantity(limits[name]):
            raise ValueError(f"the {name} request {value} exceeds its limit {limits[name]}")


def _time_zone(name: str) -> str:
    if name not in _ZONE_SET:
        raise ValueError(f"time zone {name!r} is not an IANA time zone name such as UTC or Europe/Berlin")
    return name


_ZONE_SET = frozenset(ZONES)
TimeZone = Annotated[
    str, StringConstraints(max_length=64), AfterValidator(_time_zone),
    _rules((f"self in {list(ZONES)}", "must be an IANA time zone name such as UTC or Europe/Berlin (case matters)")),
]
"""An IANA time zone name, as the CronJob controller and zoneinfo know them."""

ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
CREDENTIAL_NAME = (
    r"(?i)(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|PRIVATE_?KEY|API_?KEY|ACCESS_?KEY|^PGPASSFILE$)"
)
"""Environment variable names whose literal values would be credentials in the spec: use valueFrom."""
CREDENTIAL_VALUE = r"(?i)([a-z][a-z0-9+.-]*://[^/@:\t\n\f\r ]*:[^/@\t\n\f\r ]*@|(^|[\t\n\f\r ])password[\t\n\f\r ]*=)"
"""A value holding a password: a URL with ``user:password@`` (DATABASE_URL…) or a libpq ``password=``."""


def credential_literal(name: str, value: str | None) -> bool:
    """Whether a literal env value would put a credential into the spec."""
    return bool(value) and (re.search(CREDENTIAL_NAME, name) is not None
                            or re.search(CREDENTIAL_VALUE, value or "") is not None)


CREDENTIAL_LITERAL_CEL = (
    f"!has(self.value) || self.value == '' || (!self.name.matches('{CREDENTIAL_NAME}') && "
    f"!self.value.matches('{CREDENTIAL_VALUE.replace(chr(92), chr(92) * 2)}'))"
)
