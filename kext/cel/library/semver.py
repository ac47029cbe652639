"""The Kubernetes semver library (semver, isSemver, major/minor/patch, comparisons)."""

from __future__ import annotations

import re

from kext.cel.library import Function, global_, member
from kext.cel.library import types as t

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")


def _parse(text: str) -> re.Match[str]:
    m = _SEMVER.match(text)
    if m is None:
        raise ValueError(f"Could not parse semver: {text}")
    return m


def semver(text: str) -> object:
    _parse(text)
    return t.Semver(value=text)


def is_semver(text: str) -> bool:
    return _SEMVER.match(text) is not None


def _key(text: str) -> tuple[object, ...]:
    m = _parse(text)
    pre = m.group(4)
    ids: tuple[object, ...] = tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                                    for p in pre.split(".")) if pre else ()
    return (int(m.group(1)), int(m.group(2)), int(m.group(3)), 0 if pre else 1, ids)


def compare(a: object, b: object) -> int:
    ka, kb = _key(a.value), _key(b.value)  # type: ignore[attr-defined]
    return (ka > kb) - (ka < kb)


S = "kubernetes.Semver"
FUNCTIONS: tuple[Function, ...] = (
    global_("semver", "string_to_semver", ("string",), S, semver),
    global_("isSemver", "is_semver_string", ("string",), "bool", is_semver),
    member("major", "semver_major", (S,), "int", lambda v: int(_parse(v.value).group(1))),
    member("minor", "semver_minor", (S,), "int", lambda v: int(_parse(v.value).group(2))),
    member("patch", "semver_patch", (S,), "int", lambda v: int(_parse(v.value).group(3))),
    member("compareTo", "semver_compare_to", (S, S), "int", compare),
    member("isGreaterThan", "semver_is_greater_than", (S, S), "bool",
           lambda a, b: compare(a, b) > 0),
    member("isLessThan", "semver_is_less_than", (S, S), "bool",
           lambda a, b: compare(a, b) < 0),
)
