"""The always-allowed paths of `authorization.alwaysAllowPaths`: exact paths and prefixes
ending in '*' (cf. apiserver pkg/authorization/path), where a health endpoint also covers its
named checks (/readyz/etcd under /readyz)."""

from __future__ import annotations

from collections.abc import Iterable

HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


class AllowedPaths:
    """A set of paths and path prefixes a request path is matched against."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.paths: set[str] = set()
        self.prefixes: list[str] = []
        for entry in entries:
            if entry.endswith("*"):
                self.prefixes.append(entry[:-1])
            else:
                self.paths.add(entry)
                if entry in HEALTH_PATHS:
                    self.prefixes.append(entry + "/")

    def matches(self, path: str) -> bool:
        return path in self.paths or any(path.startswith(p) for p in self.prefixes)
