"""The Kubernetes regex library: find and findAll (matches is CEL's own)."""

from __future__ import annotations

import re
from functools import lru_cache

from kext.cel.library import Function, Overload, member


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"error parsing regexp: {exc}") from exc


def find(text: str, pattern: str) -> str:
    m = _compile(pattern).search(text)
    return m.group(0) if m else ""


def find_all(text: str, pattern: str, limit: int = -1) -> list[str]:
    out: list[str] = []
    regex = _compile(pattern)
    pos = 0
    previous_end = -1
    while pos <= len(text) and (limit < 0 or len(out) < limit):
        m = regex.search(text, pos)
        if m is None:
            break
        # Go skips an empty match right after the previous match.
        if m.end() == m.start() == previous_end:
            pos = m.end() + 1
            continue
        out.append(m.group(0))
        previous_end = m.end()
        pos = m.end() + (1 if m.end() == m.start() else 0)
    return out


FUNCTIONS: tuple[Function, ...] = (
    member("find", "string_find_string", ("string", "string"), "string", find),
    Function("findAll", (
        Overload("string_find_all_string", ("string", "string"), "list(string)", find_all,
                 member=True),
        Overload("string_find_all_string_int", ("string", "string", "int"), "list(string)",
                 find_all, member=True),
    )),
)
