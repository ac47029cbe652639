"""Authorizers in memory: the union's first decision wins, failures do not stop the next
authorizer, always-allowed paths are for non-resource requests only, privileged groups."""

from __future__ import annotations

import pytest

from kext.auth.authorization.authorizer import Attributes, Decision
from kext.auth.authorization.builtin import AlwaysAllowAuthorizer, PrivilegedGroupsAuthorizer
from kext.auth.authorization.path import PathAuthorizer
from kext.auth.authorization.union import AuthorizationError, UnionAuthorizer
from kext.auth.paths import AllowedPaths
from kext.auth.user import ANONYMOUS, UNAUTHENTICATED, UserInfo

pytestmark = pytest.mark.asyncio

ANON = UserInfo(ANONYMOUS, (UNAUTHENTICATED,))
ADMIN = UserInfo("kext-admin", ("system:masters", "system:authenticated"))


def path_request(path: str, user: UserInfo = ANON) -> Attributes:
    return Attributes(user=user, verb="get", is_resource_request=False, path=path)


def resource_request(user: UserInfo = ANON, path: str = "/readyz") -> Attributes:
    return Attributes(user=user, verb="list", is_resource_request=True, path=path,
                      namespace="ns", api_group="example.kext.io", api_version="v1alpha1",
                      resource="widgets")


class Fixed:
    def __init__(self, decision: Decision, reason: str = "") -> None:
        self.decision, self.reason = decision, reason
        self.asked = 0

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        self.asked += 1
        return self.decision, self.reason


class Failing:
    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        raise TimeoutError("the SubjectAccessReview timed out")


async def test_path_authorizer_allows_only_non_resource_requests_to_its_paths() -> None:
    paths = PathAuthorizer(AllowedPaths(["/healthz", "/readyz", "/debug/*"]))
    assert await paths.authorize(path_request("/readyz")) == (Decision.ALLOW, "")
    assert await paths.authorize(path_request("/readyz/etcd")) == (Decision.ALLOW, "")
    assert await paths.authorize(path_request("/debug/flags")) == (Decision.ALLOW, "")
    assert await paths.authorize(path_request("/metrics")) == (Decision.NO_OPINION, "")
    assert await paths.authorize(resource_request()) == (Decision.NO_OPINION, "")


async def test_privileged_groups_and_always_allow() -> None:
    masters = PrivilegedGroupsAuthorizer(["system:masters"])
    assert await masters.authorize(resource_request(ADMIN)) == (Decision.ALLOW, "")
    assert await masters.authorize(resource_request(ANON)) == (Decision.NO_OPINION, "")
    assert await AlwaysAllowAuthorizer().authorize(resource_request()) == (Decision.ALLOW, "")


async def test_union_first_decision_wins() -> None:
    deny, allow = Fixed(Decision.DENY, "not yours"), Fixed(Decision.ALLOW)
    union = UnionAuthorizer([Fixed(Decision.NO_OPINION, "no rule"), deny, allow])
    assert await union.authorize(resource_request()) == (Decision.DENY, "not yours")
    assert allow.asked == 0
    nobody = UnionAuthorizer([Fixed(Decision.NO_OPINION, "a"), Fixed(Decision.NO_OPINION, "b")])
    assert await nobody.authorize(resource_request()) == (Decision.NO_OPINION, "a\nb")


async def test_union_failure_does_not_stop_a_later_decision() -> None:
    union = UnionAuthorizer([Failing(), Fixed(Decision.ALLOW)])
    assert await union.authorize(resource_request()) == (Decision.ALLOW, "")
    undecided = UnionAuthorizer([Failing(), Fixed(Decision.NO_OPINION)])
    with pytest.raises(AuthorizationError, match="timed out"):
        await undecided.authorize(resource_request())
