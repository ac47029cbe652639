"""with_authorizer: CEL's synchronous `authorizer` checks decided by kext's asynchronous
authorizers, round by round, concurrently where the checks are independent, each once, and
an authorizer's failure an errored decision rather than an error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from kext.admission.authz import with_authorizer
from kext.admission.webhook.conditions import MatchCondition, MatchConditions
from kext.auth.authorization.authorizer import Attributes, Decision
from kext.auth.authorization.union import UnionAuthorizer
from kext.auth.authorization.webhook import review_spec
from kext.auth.user import UserInfo
from kext.cel import (
    AUTHORIZER_VARIABLES,
    AuthorizerValue,
    Check,
    Environment,
    EvaluationError,
    Resource,
)
from kext.cel import Decision as CheckDecision

pytestmark = pytest.mark.asyncio

DECLARED = {"object": "dyn", **AUTHORIZER_VARIABLES}
ALICE = UserInfo("alice", ("devs",), "u-1", {"scopes": ("a",)})


class Rules:
    """Allows the verbs in `allowed`; records each question; fails on `failing` verbs."""

    def __init__(self, *allowed: str, failing: tuple[str, ...] = ()) -> None:
        self.allowed = set(allowed)
        self.failing = failing
        self.asked: list[Attributes] = []

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        self.asked.append(attributes)
        await asyncio.sleep(0)
        if attributes.verb in self.failing:
            raise RuntimeError(f"the authorization webhook is down ({attributes.verb})")
        if attributes.verb in self.allowed:
            return Decision.ALLOW, f"{attributes.verb} allowed by rule"
        return Decision.DENY, f"{attributes.verb} denied by rule"


@pytest.fixture(scope="module")
def env() -> Environment:
    environment = Environment("kext.test", variables=("object", *AUTHORIZER_VARIABLES))
    environment.seal()
    return environment


def evaluation(env: Environment, *expressions: str, obj: Any = None,
               runs: list[int] | None = None) -> Callable[[AuthorizerValue], list[Any]]:
    """Evaluates the expressions, one activation each, counting the runs in `runs`."""
    programs = [env.compile_expression(e, DECLARED, result="dyn") for e in expressions]
    resource = Resource("example.kext.io", "v1", "widgets", "", "ns", "w1")

    def evaluate(value: AuthorizerValue) -> list[Any]:
        if runs is not None:
            runs.append(1)
        return [p.evaluate(env.bind({"object": obj}, authorizer=value,
                                    request_resource=resource)) for p in programs]
    return evaluate


async def test_the_requests_user_is_asked_about_every_version(env: Environment) -> None:
    rules = Rules("update")
    result = await with_authorizer(evaluation(
        env, "authorizer.requestResource.check('update').allowed()"), rules, ALICE)
    assert result == [True]
    [asked] = rules.asked
    assert asked == Attributes(user=ALICE, verb="update", is_resource_request=True, path="",
                               namespace="ns", api_group="example.kext.io", api_version="*",
                               resource="widgets", name="w1")


async def test_a_service_account_is_asked_as_kube_names_it(env: Environment) -> None:
    rules = Rules("get")
    assert await with_authorizer(evaluation(
        env, "authorizer.serviceAccount('team', 'bot').path('/healthz').check('get')"
             ".allowed()"), rules, ALICE) == [True]
    [asked] = rules.asked
    assert (asked.user, asked.verb, asked.is_resource_request, asked.path) == (
        UserInfo("system:serviceaccount:team:bot",
                 ("system:serviceaccounts", "system:serviceaccounts:team")),
        "get", False, "/healthz")


async def test_a_check_that_depends_on_another_is_made_in_the_next_round(
        env: Environment) -> None:
    rules = Rules("get", "approve")
    runs: list[int] = []
    expression = ("authorizer.requestResource.check("
                  "authorizer.path('/mode').check('get').allowed() ? 'approve' : 'reject')"
                  ".reason()")
    assert await with_authorizer(evaluation(env, expression, runs=runs), rules, ALICE) == [
        "approve allowed by rule"]
    # one run per round, and only the checks kube makes: never 'reject', which only a
    # made-up decision of '/mode' would reach
    assert [a.verb for a in rules.asked] == ["get", "approve"]
    assert len(runs) == 3


async def test_a_short_circuit_skips_what_kube_skips(env: Environment) -> None:
    rules = Rules("get")
    expression = ("authorizer.path('/a').check('get').allowed() || "
                  "authorizer.path('/b').check('get').allowed()")
    assert await with_authorizer(evaluation(env, expression), rules, ALICE) == [True]
    assert [a.path for a in rules.asked] == ["/a"]
    denied = Rules()
    assert await with_authorizer(evaluation(env, expression), denied, ALICE) == [False]
    assert [a.path for a in denied.asked] == ["/a", "/b"]


async def test_independent_checks_are_made_concurrently_and_once(env: Environment) -> None:
    in_flight: set[str] = set()
    both = asyncio.Event()

    class Barrier:
        """Answers only once both paths are being asked at the same time."""

        def __init__(self) -> None:
            self.asked: list[str] = []

        async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
            self.asked.append(attributes.path)
            in_flight.add(attributes.path)
            if in_flight == {"/a", "/b"}:
                both.set()
            await asyncio.wait_for(both.wait(), 5)
            return Decision.ALLOW, ""

    authorizer = Barrier()
    # three expressions, two of them asking the same check: two checks, made together
    result = await with_authorizer(evaluation(
        env, "authorizer.path('/a').check('get').allowed()",
        "authorizer.path('/b').check('get').allowed()",
        "authorizer.path('/a').check('get').allowed() && object.ok", obj={"ok": True}),
        authorizer, ALICE)
    assert result == [True, True, True]
    assert sorted(authorizer.asked) == ["/a", "/b"]


async def test_an_authorizer_error_is_an_errored_decision(env: Environment) -> None:
    rules = Rules(failing=("list",))
    assert await with_authorizer(evaluation(
        env, "authorizer.group('').resource('pods').check('list').errored()",
        "authorizer.group('').resource('pods').check('list').error()",
        "authorizer.group('').resource('pods').check('list').allowed()"),
        UnionAuthorizer([rules]), ALICE) == [
        True, "the authorization webhook is down (list)", False]
    assert len(rules.asked) == 1
    ok = Rules("list")
    assert await with_authorizer(evaluation(
        env, "authorizer.group('').resource('pods').check('list').errored()",
        "authorizer.group('').resource('pods').check('list').error()"), ok, ALICE) == [
        False, ""]


async def test_an_evaluation_error_is_raised_once_the_checks_are_decided(
        env: Environment) -> None:
    rules = Rules("get")
    with pytest.raises(EvaluationError, match="no such key: missing"):
        await with_authorizer(evaluation(
            env, "authorizer.path('/a').check('get').allowed() && object.missing",
            obj={}), rules, ALICE)
    assert len(rules.asked) == 1


async def test_without_checks_the_evaluation_runs_once(env: Environment) -> None:
    runs: list[int] = []
    rules = Rules()
    assert await with_authorizer(evaluation(env, "object.size > 1", obj={"size": 2},
                                            runs=runs), rules, None) == [True]
    assert (len(runs), rules.asked) == (1, [])


async def test_selectors_narrow_a_check_as_kube_sends_them(env: Environment) -> None:
    rules = Rules("list")
    assert await with_authorizer(evaluation(
        env, "authorizer.group('').resource('pods').fieldSelector('spec.nodeName=mynode')"
             ".labelSelector('tier notin (db),app=example,!legacy,rank>3').check('list')"
             ".allowed()",
        # a selector that does not parse is left out: the check is broader, never narrower
        "authorizer.group('').resource('pods').labelSelector('a in b').check('list')"
        ".allowed()"), rules, ALICE) == [True, True]
    narrowed, broad = rules.asked
    assert review_spec(narrowed)["resourceAttributes"] == {
        "verb": "list", "version": "*", "resource": "pods",
        "fieldSelector": {"requirements": [
            {"key": "spec.nodeName", "operator": "In", "values": ["mynode"]}]},
        "labelSelector": {"requirements": [
            {"key": "app", "operator": "In", "values": ["example"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "NotIn", "values": ["db"]}]}}
    assert review_spec(broad)["resourceAttributes"] == {
        "verb": "list", "version": "*", "resource": "pods"}


async def test_decisions_shared_by_a_requests_evaluations_are_made_once(
        env: Environment) -> None:
    rules = Rules(failing=("get",))
    decisions: dict[Check, CheckDecision] = {}
    expression = "authorizer.path('/a').check('get').error()"
    for _ in range(2):
        assert await with_authorizer(evaluation(env, expression), rules, ALICE,
                                     decisions=decisions) == ["the authorization webhook is "
                                                              "down (get)"]
    assert len(rules.asked) == 1  # kube's CachingAuthorizer keeps errors too


async def test_match_conditions_are_all_evaluated_as_kubes_are() -> None:
    conditions = MatchConditions()
    rules = Rules("get")
    both = (MatchCondition("small", "object.size < 2"),
            MatchCondition("may-get", "authorizer.path('/x').check('get').allowed()"))
    assert await conditions.matches(both, {"size": 5}, None, {}, authorizer=rules,
                                    user=ALICE) is False
    assert [a.path for a in rules.asked] == ["/x"]  # asked although the first is false
    assert await conditions.matches(both, {"size": 1}, None, {}, authorizer=rules,
                                    user=ALICE) is True


async def test_match_conditions_without_the_servers_authorizer_have_errored_checks() -> None:
    conditions = MatchConditions()
    assert await conditions.matches(
        (MatchCondition("a", "authorizer.path('/x').check('get').error() == "
                             "'no authorizer is configured'"),), {}, None, {}) is True
