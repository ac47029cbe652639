"""What an authorizer is asked and what it answers (cf. apiserver
pkg/authorization/authorizer/interfaces.go)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from kext.auth.user import UserInfo


class Decision(enum.Enum):
    """An authorizer's answer: allow, deny (stop asking), or no opinion (ask the next)."""

    DENY = "Deny"
    ALLOW = "Allow"
    NO_OPINION = "NoOpinion"


class SelectorRequirement(NamedTuple):
    """One requirement of a field or label selector, as a SubjectAccessReview carries it
    (operator In, NotIn, Exists or DoesNotExist)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


# Not frozen: built for every request, and a frozen dataclass takes three times as long.
@dataclass(slots=True)
class Attributes:
    """What a request asks to do, as authorization sees it (cf. AttributesRecord): a verb on
    a resource (group, version, resource, subresource, namespace, name, and the field and
    label selectors it is narrowed to) or on a non-resource path."""

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
    field_selector: tuple[SelectorRequirement, ...] = ()
    label_selector: tuple[SelectorRequirement, ...] = ()


class Authorizer(Protocol):
    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        """The decision and the reason for it (shown to a denied user). Raises when no
        decision could be reached (e.g. the authorization service is unreachable): the
        request then fails closed."""
        ...
