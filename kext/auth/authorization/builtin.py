"""The authorizers that need nothing but configuration (cf. apiserver
pkg/authorization/authorizerfactory/builtin.go)."""

from __future__ import annotations

from collections.abc import Iterable

from kext.auth.authorization.authorizer import Attributes, Decision


class AlwaysAllowAuthorizer:
    """Allow everything (`authorization.mode: AlwaysAllow`)."""

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        return Decision.ALLOW, ""


class PrivilegedGroupsAuthorizer:
    """Allow members of the given groups (`authorization.alwaysAllowGroups`, by default
    system:masters) to do anything; no opinion on anyone else."""

    def __init__(self, groups: Iterable[str]) -> None:
        self.groups = frozenset(groups)

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        if self.groups.intersection(attributes.user.groups):
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""
