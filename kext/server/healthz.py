"""/healthz, /livez and /readyz with named checks (cf. apiserver pkg/server/healthz)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kext.api import errors
from kext.server.request import APIRequest, Response

log = logging.getLogger(__name__)

# A check returns None when healthy, or the reason it is not.
CheckFunc = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class Check:
    name: str
    run: CheckFunc


async def ping() -> str | None:
    return None


class HealthEndpoint:
    """One of /healthz, /livez, /readyz: runs its checks and reports like kube-apiserver."""

    def __init__(self, name: str, checks: list[Check]) -> None:
        self.name = name
        self.checks = checks

    async def serve(self, request: APIRequest, check_name: str = "") -> Response:
        if check_name:
            check = next((c for c in self.checks if c.name == check_name), None)
            if check is None:
                raise errors.path_not_found(request.path)
            reason = await check.run()
            if reason is None:
                return _text(200, "ok")
            log.warning("%s check %s failed: %s", self.name, check.name, reason)
            return _text(500, f"internal server error: {check.name} check failed: {reason}\n")
        excluded = set(request.query.get("exclude", []))
        verbose = "verbose" in request.query
        lines = []
        failed = False
        for check in self.checks:
            if check.name in excluded:
                lines.append(f"[+]{check.name} excluded: ok")
                continue
            reason = await check.run()
            if reason is None:
                lines.append(f"[+]{check.name} ok")
            else:
                failed = True
                log.warning("%s check %s failed: %s", self.name, check.name, reason)
                lines.append(f"[-]{check.name} failed: reason withheld")
        if failed:
            lines.append(f"{self.name} check failed")
            return _text(500, "\n".join(lines) + "\n")
        if not verbose:
            return _text(200, "ok")
        lines.append(f"{self.name} check passed")
        return _text(200, "\n".join(lines) + "\n")


def _text(code: int, body: str) -> Response:
    return Response(code, body.encode(), "text/plain; charset=utf-8",
                    [("X-Content-Type-Options", "nosniff")])
