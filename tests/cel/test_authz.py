"""The authz library (`authorizer`) on the examples of its documentation
(k8s.io/apiserver pkg/cel/library/authz.go): each expression's result and the checks it
makes, with an authorizer that allows what the test says and records what it is asked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kext.cel import (
    AUTHORIZER_VARIABLES,
    Check,
    CompileError,
    Decision,
    Environment,
    EvaluationError,
    Resource,
    ServiceAccount,
    authorized,
    estimated_cost,
)

DECLARED = {"object": "dyn", **AUTHORIZER_VARIABLES}
REQUEST = Resource("example.kext.io", "v1", "widgets", "", "ns", "w1")


class Recording:
    """Allows what `allow` says (all when None), records every check it decides."""

    def __init__(self, allow: Any = None) -> None:
        self.allow = allow
        self.checks: list[Check] = []

    async def authorize(self, check: Check) -> Decision:
        self.checks.append(check)
        if self.allow is None or self.allow(check):
            return Decision("Allow", reason=f"{check.verb} is fine")
        return Decision("NoOpinion", reason="no rule says so")


@pytest.fixture(scope="module")
def env() -> Environment:
    environment = Environment("kext.test", variables=("object", *AUTHORIZER_VARIABLES))
    environment.seal()
    return environment


def run(env: Environment, expression: str, authorizer: Recording | None = None,
        obj: Any = None) -> Any:
    program = env.compile_expression(expression, DECLARED, result="dyn")
    authorizer = authorizer or Recording()

    def evaluate(value: Any) -> Any:
        return program.evaluate(env.bind({"object": obj}, authorizer=value,
                                         request_resource=REQUEST))
    return asyncio.run(authorized(evaluate, authorizer))


def pods(verb: str, **fields: Any) -> Check:
    return Check(verb, resource_request=True, resource="pods", **fields)


# (expression, its result, the checks it makes)
EXAMPLES: list[tuple[str, Any, list[Check]]] = [
    ("authorizer.path('/healthz').check('get').allowed()", True,
     [Check("get", path="/healthz")]),
    ("authorizer.path('/healthz').check('GET').reason()", "GET is fine",
     [Check("GET", path="/healthz")]),
    ("authorizer.group('').resource('pods').namespace('default').check('create').allowed()",
     True, [pods("create", namespace="default")]),
    ("authorizer.group('apps').resource('deployments').namespace('test').name('backend')"
     ".check('update').allowed()", True,
     [Check("update", resource_request=True, group="apps", resource="deployments",
            namespace="test", name="backend")]),
    # "" unsets subresource and name; namespace "" is the cluster scope
    ("authorizer.group('apps').resource('deployments').namespace('test').name('')"
     ".check('list').allowed()", True,
     [Check("list", resource_request=True, group="apps", resource="deployments",
            namespace="test")]),
    ("authorizer.group('example.com').resource('widgets').subresource('')"
     ".check('get').allowed()", True,
     [Check("get", resource_request=True, group="example.com", resource="widgets")]),
    ("authorizer.group('').resource('widgets').namespace('').check('get').allowed()", True,
     [Check("get", resource_request=True, resource="widgets")]),
    ("authorizer.group('').resource('pods').subresource('status').check('update').allowed()",
     True, [pods("update", subresource="status")]),
    ("authorizer.group('apps').resource('deployments').subresource('scale')"
     ".check('update').allowed()", True,
     [Check("update", resource_request=True, group="apps", resource="deployments",
            subresource="scale")]),
    ("authorizer.serviceAccount('default', 'myserviceaccount').group('').resource('pods')"
     ".check('list').allowed()", True,
     [pods("list", service_account=ServiceAccount("default", "myserviceaccount"))]),
    ("authorizer.serviceAccount('default', 'sa').path('/metrics').check('get').allowed()",
     True, [Check("get", path="/metrics", service_account=ServiceAccount("default", "sa"))]),
    ("authorizer.group('').resource('pods').fieldSelector('spec.nodeName=mynode')"
     ".check('list').allowed()", True, [pods("list", field_selector="spec.nodeName=mynode")]),
    ("authorizer.group('').resource('pods').labelSelector('app=example')"
     ".check('list').allowed()", True, [pods("list", label_selector="app=example")]),
    ("authorizer.group('').resource('pods').namespace('default').check('create').errored()",
     False, [pods("create", namespace="default")]),
    ("authorizer.group('').resource('pods').namespace('default').check('create').error()",
     "", [pods("create", namespace="default")]),
    # the request's own resource, which a check may narrow further
    ("authorizer.requestResource.check('update').allowed()", True,
     [Check("update", resource_request=True, group="example.kext.io", resource="widgets",
            namespace="ns", name="w1")]),
    ("authorizer.requestResource.subresource('status').name('').check('patch').allowed()",
     True, [Check("patch", resource_request=True, group="example.kext.io",
                  resource="widgets", subresource="status", namespace="ns")]),
    # builders alone ask nothing
    ("authorizer.group('apps').resource('deployments') == "
     "authorizer.group('apps').resource('deployments')", True, []),
]


@pytest.mark.parametrize(("expression", "result", "checks"), EXAMPLES,
                         ids=[e[0] for e in EXAMPLES])
def test_kube_example(env: Environment, expression: str, result: Any,
                      checks: list[Check]) -> None:
    authorizer = Recording()
    assert run(env, expression, authorizer) == result
    assert authorizer.checks == checks


@pytest.mark.parametrize(("expression", "error"), [
    ("authorizer.path('')", "path must not be empty"),
    ("authorizer.path('  ')", "path must not be empty"),
    ("authorizer.group('apps').resource('')", "resource must not be empty"),
    ("authorizer.group('apps').resource('  ')", "resource must not be empty"),
    ("authorizer.serviceAccount('not@a#valid!namespace', 'validname')",
     "Invalid service account namespace"),
    # the name is checked first
    ("authorizer.serviceAccount('valid.example.com', 'invalid@*name')",
     "Invalid service account name"),
])
def test_kube_example_errors(env: Environment, expression: str, error: str) -> None:
    with pytest.raises(EvaluationError, match=f"^{error}$"):
        run(env, expression)


def test_a_denied_check_and_its_reason(env: Environment) -> None:
    authorizer = Recording(allow=lambda check: check.verb != "delete")
    assert run(env, "authorizer.requestResource.check('delete').allowed()", authorizer) is False
    assert run(env, "authorizer.requestResource.check('delete').reason()",
               authorizer) == "no rule says so"
    assert run(env, "authorizer.requestResource.check('get').allowed()", authorizer) is True


def test_the_types_are_kubes(env: Environment) -> None:
    with pytest.raises(CompileError) as error:
        env.compile_expression("authorizer.path(1)", DECLARED)
    assert "'(kubernetes.authorization.Authorizer, int)'" in str(error.value)
    with pytest.raises(CompileError) as error:
        env.compile_expression("authorizer.group('').check('get')", DECLARED)
    assert "'(kubernetes.authorization.GroupCheck, string)'" in str(error.value)
    with pytest.raises(CompileError, match="must evaluate to a bool"):
        env.compile_expression("authorizer.path('/x').check('get')", DECLARED)
    env.compile_expression("authorizer.requestResource.check('get').allowed()", DECLARED)


def test_a_check_costs_what_kube_declares(env: Environment) -> None:
    one = env.compile_expression("authorizer.path('/a').check('get').allowed()", DECLARED)
    two = env.compile_expression("authorizer.path('/a').check('get').allowed() && "
                                 "authorizer.group('').resource('pods').check('list').allowed()",
                                 DECLARED)
    assert 350_000 < estimated_cost(one, lambda _: 0) < 350_010
    assert 700_000 < estimated_cost(two, lambda _: 0) < 700_020
    # a selector's parse: kube's list, traversal and per-requirement figures
    selector = env.compile_expression(
        "authorizer.group('').resource('pods').labelSelector('app=example')"
        ".check('list').allowed()", DECLARED)
    assert estimated_cost(selector, lambda _: 0) - estimated_cost(
        env.compile_expression("authorizer.group('').resource('pods').check('list').allowed()",
                               DECLARED), lambda _: 0) == 10 + 2 + 6 * 50


def test_checks_past_the_rounds_allowed_answer_an_error(env: Environment) -> None:
    # each check's verb depends on the one before: one round each
    expression = ("authorizer.path('/c').check(authorizer.path('/b').check("
                  "authorizer.path('/a').check('get').allowed() ? 'get' : 'x')"
                  ".allowed() ? 'get' : 'x').error()")
    program = env.compile_expression(expression, DECLARED, result="dyn")
    authorizer = Recording()

    def evaluate(value: Any) -> Any:
        return program.evaluate(env.bind({}, authorizer=value, request_resource=REQUEST))
    assert asyncio.run(authorized(evaluate, authorizer, max_rounds=2)) == (
        "more than 2 rounds of authorization checks")
    assert [c.path for c in authorizer.checks] == ["/a", "/b"]
    assert asyncio.run(authorized(evaluate, Recording())) == ""
