"""Kube-aware ordering of version names (apimachinery's CompareKubeAwareVersionStrings):
which version of a group is preferred, and which is newer than a deprecated one."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

_KUBE_VERSION_RE = re.compile(r"^v([0-9]+)(?:(alpha|beta)([0-9]+))?$")
_STAGE = {"alpha": 0, "beta": 1, "": 2}


def _parse_kube_version(name: str) -> tuple[int, int, int] | None:
    m = _KUBE_VERSION_RE.match(name)
    if m is None:
        return None
    return _STAGE[m.group(2) or ""], int(m.group(1)), int(m.group(3) or 0)


def compare_versions(a: str, b: str) -> int:
    """Kube-aware version comparison (apimachinery `CompareKubeAwareVersionStrings`).

    Positive when a has the higher priority: GA > beta > alpha, then higher major, then higher
    minor (v2 > v1 > v1beta2 > v1beta1 > v1alpha1); versions not of that shape sort after those
    that are, alphabetically among themselves.
    """
    if a == b:
        return 0
    pa, pb = _parse_kube_version(a), _parse_kube_version(b)
    if pa is None and pb is None:
        return -1 if a > b else 1
    if pa is None:
        return -1
    if pb is None:
        return 1
    return -1 if pa < pb else 1


def sort_versions(names: Iterable[str]) -> list[str]:
    """Version names by kube priority, highest first; the first is the preferred version."""
    return sorted(set(names), key=functools.cmp_to_key(compare_versions), reverse=True)
