"""authorization_attempts_total and authorization_duration_seconds around an authorizer, by
result as kube's WithAuthorization records them (cf. endpoints/filters/metrics.go): allowed,
denied, no-opinion, or error when no decision was reached."""

from __future__ import annotations

import time

from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision
from kext.metrics import Metrics

_RESULTS = {Decision.ALLOW: "allowed", Decision.DENY: "denied",
            Decision.NO_OPINION: "no-opinion"}


class MeteredAuthorizer:
    """Asks `authorizer` and records how it went in `metrics`."""

    def __init__(self, authorizer: Authorizer, metrics: Metrics) -> None:
        self.authorizer = authorizer
        self.metrics = metrics
        # each result's counter and histogram children, resolved once (labels() per request
        # cost more than the authorization itself)
        self._children = {
            result: (metrics.authorization_attempts.labels(result),
                     metrics.authorization_duration.labels(result))
            for result in (*_RESULTS.values(), "error")
        }

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        started = time.monotonic()
        try:
            decision, reason = await self.authorizer.authorize(attributes)
        except Exception:
            self._record("error", started)
            raise
        self._record(_RESULTS[decision], started)
        return decision, reason

    def _record(self, result: str, started: float) -> None:
        attempts, duration = self._children[result]
        attempts.inc()
        duration.observe(time.monotonic() - started)
