"""The Accept header, read one way for every endpoint: its clauses by preference (as
goautoneg's ParseAccept reads them for k8s.io/apiserver), then the first clause that matches a
media type the endpoint serves and whose parameters it can honour (NegotiateMediaTypeOptions
in apiserver pkg/endpoints/handlers/negotiation).

Preference is RFC 9110's: a higher q first, q=0 never; among equal q a specific type before
`type/*` before `*/*`, then header order. (goautoneg's comparison lets a specific type outrank
a wildcard of higher q; kext keeps q first.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TypeVar

JSON = "application/json"
YAML = "application/yaml"

_T = TypeVar("_T")


@dataclass(frozen=True)
class MediaRange:
    """One clause of an Accept header: `type/subtype;param=value;q=...`."""

    type: str
    subtype: str
    params: Mapping[str, str]
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        """Whether this clause admits media_type (`application/json`): the same type, or
        `application/*`, or `*/*`."""
        type_, _, subtype = media_type.partition("/")
        if self.type == "*":
            return self.subtype == "*"
        return self.type == type_ and self.subtype in ("*", subtype)


_ANY = (MediaRange("*", "*", MappingProxyType({})),)


@lru_cache(maxsize=256)
def parse_accept(header: str | None) -> tuple[MediaRange, ...]:
    """An Accept header's clauses, most preferred first; clauses with q=0 (or an unreadable
    q) and unparsable clauses dropped. A missing or blank header is `*/*`, and a bare `*`
    is `*/*`, as in goautoneg. Types and parameter names are lowercased, quotes around
    parameter values removed."""
    if not header or not header.strip():
        return _ANY
    ranges: list[MediaRange] = []
    for clause in header.split(","):
        media, *parameters = clause.split(";")
        type_, slash, subtype = media.strip().lower().partition("/")
        if not slash and type_ == "*":
            subtype = "*"
        elif not type_ or not subtype or "/" in subtype:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for parameter in parameters:
            key, sep, value = parameter.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if not sep or not key:
                continue
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            else:
                params[key] = value
        if q > 0:
            ranges.append(MediaRange(type_.strip(), subtype.strip(), MappingProxyType(params), q))
    ranges.sort(key=lambda r: (-r.q, r.type == "*", r.subtype == "*"))  # stable: header order
    return tuple(ranges)


def negotiate_media_type(accept: str | None, offered: Sequence[str],
                         choose: Callable[[MediaRange, str], _T | None]) -> _T | None:
    """The first choice an Accept header allows, or None (406 Not Acceptable).

    Clauses are tried by preference, each against the offered media types in the server's
    order (so `*/*` means the first); `choose(clause, media_type)` reads the clause's
    parameters (`as`, `g`, `v`...) and returns None to pass over a combination it cannot
    serve."""
    for clause in parse_accept(accept):
        for media_type in offered:
            if clause.matches(media_type):
                chosen = choose(clause, media_type)
                if chosen is not None:
                    return chosen
    return None
