"""Ask authorizers in turn until one allows or denies (cf. apiserver
pkg/authorization/union)."""

from __future__ import annotations

from collections.abc import Sequence

from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision


class AuthorizationError(Exception):
    """No authorizer decided and at least one of them failed."""

    def __init__(self, errors: Sequence[Exception]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) or type(e).__name__ for e in self.errors))


class UnionAuthorizer:
    """The first Allow or Deny wins. An authorizer that fails does not stop the next one
    from deciding; if none decides, the failures are raised together."""

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = authorizers

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        reasons: list[str] = []
        failures: list[Exception] = []
        for authorizer in self.authorizers:
            try:
                decision, reason = await authorizer.authorize(attributes)
            except Exception as exc:
                failures.append(exc)
                continue
            if decision is not Decision.NO_OPINION:
                return decision, reason
            if reason:
                reasons.append(reason)
        if failures:
            raise AuthorizationError(failures)
        return Decision.NO_OPINION, "\n".join(reasons)
