"""Impersonation in memory, through the filter chain as the server builds it: one
`impersonate` check per thing asked for (users, groups, serviceaccounts, uids, userextras),
the impersonated user's groups as kube makes them, kube's 403 and 400, and the Impersonate-*
headers gone before the handler."""

from __future__ import annotations

import json

import pytest

from kext.auth import impersonation
from kext.auth.authorization.authorizer import Attributes, Decision
from kext.auth.user import AUTHENTICATED, UserInfo
from kext.metrics import Metrics
from kext.server import filters
from kext.server.request import AnyResponse, APIRequest, Handler, Response
from kext.server.request_info import parse_request_info

pytestmark = pytest.mark.asyncio

ALICE = UserInfo("alice", ("devs", AUTHENTICATED))
WIDGETS = "/apis/example.kext.io/v1alpha1/namespaces/default/widgets"


class Recording:
    """Allows impersonating what `allowed` lists as (resource, name); allows everything else;
    records every check."""

    def __init__(self, *allowed: tuple[str, str]) -> None:
        self.allowed = set(allowed)
        self.asked: list[Attributes] = []

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        self.asked.append(attributes)
        if attributes.verb != "impersonate":
            return Decision.ALLOW, ""
        key = (attributes.resource + (f"/{attributes.subresource}"
                                      if attributes.subresource else ""), attributes.name)
        return (Decision.ALLOW if key in self.allowed else Decision.NO_OPINION), ""


class Authenticated:
    """An authenticator-shaped stand-in for the union: everyone is alice."""

    def strip_identity_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return headers

    async def authenticate(self, credentials: object) -> UserInfo:
        return ALICE


seen: list[APIRequest] = []


async def handler(request: APIRequest) -> AnyResponse:
    seen.append(request)
    return Response(200, b"ok", "text/plain")


def chain(authorizer: Recording) -> Handler:
    metrics = Metrics()
    return filters.chain(handler, Authenticated(), authorizer,  # type: ignore[arg-type]
                         filters.InFlight(10, 10, metrics), 60, metrics)


def request(headers: list[tuple[str, str]], method: str = "GET") -> APIRequest:
    joined: dict[str, str] = {}
    for k, v in headers:
        joined[k] = f"{joined[k]},{v}" if k in joined else v
    return APIRequest(method, WIDGETS, {}, joined, b"", parse_request_info(method, WIDGETS, {}),
                      raw_headers=headers)


def status(response: AnyResponse) -> dict[str, object]:
    assert isinstance(response, Response)
    return json.loads(response.body)  # type: ignore[no-any-return]


async def test_the_request_runs_as_the_impersonated_user() -> None:
    authorizer = Recording(("users", "bob"), ("groups", "ops"), ("uids", "u-9"),
                           ("userextras/scopes", "read"), ("userextras/example.com/team", "a"))
    headers = [("impersonate-user", "bob"), ("impersonate-group", "ops"),
               ("impersonate-uid", "u-9"), ("impersonate-extra-scopes", "read"),
               ("impersonate-extra-example.com%2fteam", "a"), ("accept", "*/*")]
    seen.clear()
    response = await chain(authorizer)(request(headers))
    assert response.code == 200
    (served,) = seen
    assert served.user == UserInfo("bob", ("ops", AUTHENTICATED), "u-9",
                                   {"scopes": ("read",), "example.com/team": ("a",)})
    assert served.raw_headers == [("accept", "*/*")] and served.headers == {"accept": "*/*"}
    checks = [(a.user.name, a.verb, a.api_group, a.api_version, a.resource, a.subresource,
               a.name) for a in authorizer.asked]
    assert checks == [
        ("alice", "impersonate", "", "", "users", "", "bob"),
        ("alice", "impersonate", "", "", "groups", "", "ops"),
        ("alice", "impersonate", "authentication.k8s.io", "v1", "userextras", "scopes", "read"),
        ("alice", "impersonate", "authentication.k8s.io", "v1", "userextras",
         "example.com/team", "a"),
        ("alice", "impersonate", "authentication.k8s.io", "v1", "uids", "", "u-9"),
        # then the request itself is authorized as bob
        ("bob", "list", "example.kext.io", "v1alpha1", "widgets", "", ""),
    ]


async def test_a_refusal_is_kubes_403_and_nothing_is_served() -> None:
    seen.clear()
    response = await chain(Recording(("users", "bob")))(request(
        [("impersonate-user", "bob"), ("impersonate-group", "system:masters")]))
    assert response.code == 403 and not seen
    assert status(response)["message"] == (
        'groups "system:masters" is forbidden: User "alice" cannot impersonate resource '
        '"groups" in API group "" at the cluster scope')
    assert status(response)["details"] == {"name": "system:masters", "kind": "groups"}
    response = await chain(Recording())(request([("impersonate-extra-scopes", "all"),
                                                 ("impersonate-user", "bob")]))
    assert status(response)["message"] == (
        'users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API '
        'group "" at the cluster scope')
    response = await chain(Recording(("users", "bob")))(request(
        [("impersonate-user", "bob"), ("impersonate-extra-scopes", "all")]))
    assert status(response)["message"] == (
        'userextras.authentication.k8s.io "all" is forbidden: User "alice" cannot impersonate '
        'resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster '
        'scope')


async def test_groups_without_a_user_are_a_bad_request() -> None:
    response = await chain(Recording())(request([("impersonate-group", "ops"),
                                                 ("impersonate-uid", "1")]))
    assert response.code == 400
    assert status(response)["message"] == (
        "requested [{Group  ops    } {UID  1  authentication.k8s.io/v1  }] without "
        "impersonating a user")


async def test_service_accounts_and_the_groups_kube_adds() -> None:
    sa = "system:serviceaccount:team-a:builder"
    authorizer = Recording(("serviceaccounts", "builder"), ("users", "system:anonymous"),
                           ("groups", "system:unauthenticated"), ("users", "carol"),
                           ("groups", AUTHENTICATED))
    user = await impersonation.impersonate(ALICE, [("impersonate-user", sa)], authorizer)
    assert user == UserInfo(sa, ("system:serviceaccounts", "system:serviceaccounts:team-a",
                                 AUTHENTICATED))
    assert authorizer.asked[0].namespace == "team-a"
    user = await impersonation.impersonate(
        ALICE, [("impersonate-user", "system:anonymous")], authorizer)
    assert user is not None and user.groups == ("system:unauthenticated",)
    user = await impersonation.impersonate(
        ALICE, [("impersonate-user", "carol"), ("impersonate-group", "system:unauthenticated")],
        authorizer)
    assert user is not None and user.groups == ("system:unauthenticated",)
    user = await impersonation.impersonate(
        ALICE, [("impersonate-user", "carol"), ("impersonate-group", AUTHENTICATED)], authorizer)
    assert user is not None and user.groups == (AUTHENTICATED,)
    # a user name that is not a valid service account name is a plain user
    assert impersonation.split_service_account("system:serviceaccount:Bad:x") is None
    assert impersonation.split_service_account("system:serviceaccount:a:b:c") is None


async def test_an_authorizer_that_fails_is_a_refusal() -> None:
    class Failing:
        async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
            raise TimeoutError("no answer")

    with pytest.raises(impersonation.ImpersonationForbidden):
        await impersonation.impersonate(ALICE, [("impersonate-user", "bob")], Failing())
    assert await impersonation.impersonate(ALICE, [("accept", "*/*")], Failing()) is None
