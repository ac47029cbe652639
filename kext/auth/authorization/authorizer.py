"""What an authorizer is asked and what it answers (cf. apiserver
pkg/authorization/authorizer/interfaces.go)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from kext.auth.user import UserInfo


class Decision(enum.Enum):
    """An authorizer's answer: allow, deny (stop asking), or no opinion (ask the next)."""

    DENY = "Deny"
    ALLOW = "Allow"
    NO_OPINION = "NoOpinion"


# Not frozen: built for every request, and a frozen dataclass takes three times as long.
@dataclass(slots=True)
class Attributes:
    """What a request asks to do, as authorization sees it (cf. AttributesRecord): a verb on
    a resource (group, version, resource, subresource, namespace, name) or on a
    non-resource path."""

    user: UserInfo
    verb: str
    is_resource_request: bool
    path: str
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


class Authorizer(Protocol):
    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        """The decision and the reason for it (shown to a denied user). Raises when no
        decision could be reached (e.g. the authorization service is unreachable): the
        request then fails closed."""
        ...
