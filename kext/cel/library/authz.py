"""The Kubernetes authz library (k8s.io/apiserver pkg/cel/library/authz.go, with the 1.31
selectors): the `authorizer` variable of admission expressions and the checks built on it.

    authorizer.path('/healthz').check('get').allowed()
    authorizer.group('apps').resource('deployments').namespace('ns').name('web').check('update')
    authorizer.serviceAccount('ns', 'sa').group('').resource('pods').check('list').reason()
    authorizer.requestResource.subresource('status').check('update').errored()

The builders (path, group, serviceAccount, resource, subresource, namespace, name,
fieldSelector, labelSelector) are plain values: each message carries what it has been given
so far as canonical JSON in its one field. `check` is where authorization happens, and kext's
authorizers are asynchronous while CEL calls functions synchronously: so `check` is bound to
each evaluation (AuthorizerValue) and answers from the decisions made so far, recording the
check it had no answer for. `authorized` runs an evaluation, has the authorizer decide what
it asked for (concurrently), and runs it again with those decisions, until it asks for
nothing new. CEL has no side effects, so the evaluation whose every check was answered by
its decision is exactly the evaluation kube makes with the authorizer called inline, and
the earlier ones leave nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import orjson

from kext.cel.library import Function, member
from kext.cel.library import types as t
from kext.cel.library.format import dns1123_label, dns1123_subdomain

AUTHORIZER = "kubernetes.authorization.Authorizer"
PATH_CHECK = "kubernetes.authorization.PathCheck"
GROUP_CHECK = "kubernetes.authorization.GroupCheck"
RESOURCE_CHECK = "kubernetes.authorization.ResourceCheck"
DECISION = "kubernetes.authorization.Decision"

# The variables an expression with an authorizer may read, and their types.
VARIABLES = {"authorizer": AUTHORIZER, "authorizer.requestResource": RESOURCE_CHECK}

# Rounds of authorization one evaluation may need: a check whose arguments depend on another
# check's decision needs one more. Past this, checks still undecided answer an error.
MAX_ROUNDS = 8

ALLOW, DENY, NO_OPINION = "Allow", "Deny", "NoOpinion"

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceAccount:
    """The principal of `authorizer.serviceAccount(namespace, name)`'s checks."""

    namespace: str
    name: str


@dataclass(frozen=True)
class Check:
    """One authorization an expression asks for, as kube's AttributesRecord has it: a verb
    on a non-resource path, or (resource_request) on a resource of a group at version "*";
    by the request's user, or by service_account when given."""

    verb: str
    resource_request: bool = False
    path: str = ""
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    field_selector: str = ""
    label_selector: str = ""
    service_account: ServiceAccount | None = None


@dataclass(frozen=True)
class Decision:
    """An authorizer's answer to a check (decision Allow, Deny or NoOpinion, and its
    reason); error when it could not decide (errored() is then true, as kube's)."""

    decision: str
    reason: str = ""
    error: str | None = None


@dataclass(frozen=True)
class Resource:
    """The resource a request is for (`authorizer.requestResource`; cf. library.Resource):
    the check's version is "*" whatever the request's."""

    group: str
    version: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""


class CheckAuthorizer(Protocol):
    """Decides an expression's checks (kext.admission.authz adapts a server's Authorizer and
    a request's user to it). May raise: the check's decision is then errored."""

    def authorize(self, check: Check) -> Awaitable[Decision]:
        ...


_PENDING = Decision(NO_OPINION, error="the authorization check has not been made")


class AuthorizerValue:
    """The authorizer of one evaluation: `check` answers from `decisions`; a check they do
    not answer is answered with `otherwise`, and the first such check of each activation is
    recorded in `asked`. The checks after it in that activation were reached with a made-up
    decision, and kube might not make them: they are asked in a later round if the
    evaluation still reaches them. So the checks authorized are the ones kube makes, and
    checks of expressions evaluated in different activations are decided concurrently."""

    def __init__(self, decisions: Mapping[Check, Decision],
                 otherwise: Decision = _PENDING) -> None:
        self.decisions = decisions
        self.otherwise = otherwise
        self.asked: dict[Check, None] = {}  # in the order asked

    def check_function(self) -> Callable[[Any, str], Any]:
        """`<PathCheck|ResourceCheck>.check(verb)` for one activation, as CEL calls it."""
        undecided = False

        def check(receiver: Any, verb: str) -> Any:
            nonlocal undecided
            check = check_of(receiver, verb)
            decision = self.decisions.get(check)
            if decision is None:
                if not undecided:
                    self.asked[check] = None
                    undecided = True
                decision = self.otherwise
            return decision_message(decision)
        return check

    def variables(self, request_resource: Resource | None) -> dict[str, Any]:
        """`authorizer` and `authorizer.requestResource` (empty without a resource)."""
        return {"authorizer": t.Authorizer(value=""),
                "authorizer.requestResource": t.ResourceCheck(
                    value=_request_resource_value(request_resource))}


@lru_cache(maxsize=256)
def _request_resource_value(resource: Resource | None) -> str:
    if resource is None:
        return _message(t.ResourceCheck, {}).value
    return _message(t.ResourceCheck, {
        "group": resource.group, "resource": resource.resource,
        "subresource": resource.subresource, "namespace": resource.namespace,
        "name": resource.name}).value


async def authorized(evaluate: Callable[[AuthorizerValue], T], authorizer: CheckAuthorizer,
                     *, decisions: MutableMapping[Check, Decision] | None = None,
                     max_rounds: int = MAX_ROUNDS) -> T:
    """What evaluate returns (or raises) once every check it asks for has been decided by
    authorizer. evaluate is synchronous, runs CEL with the AuthorizerValue it is given and
    may run several times: the checks of one round are decided concurrently, each once;
    a check authorizer fails on is an errored decision. decisions, when given, are the ones
    made already and receive the new ones (shared by evaluations for one user). After
    max_rounds rounds, a check still undecided answers an error."""
    if decisions is None:
        decisions = {}
    for _ in range(max_rounds):
        value = AuthorizerValue(decisions)
        try:
            result = evaluate(value)
        except Exception:
            if not value.asked:
                raise
            # it failed on a made-up decision: evaluated again once that one is made
        else:
            if not value.asked:
                return result
        asked = list(value.asked)
        answers = await asyncio.gather(*(_decide(authorizer, c) for c in asked)) \
            if len(asked) > 1 else [await _decide(authorizer, asked[0])]
        decisions.update(zip(asked, answers, strict=True))
    return evaluate(AuthorizerValue(decisions, Decision(
        NO_OPINION, error=f"more than {max_rounds} rounds of authorization checks")))


async def _decide(authorizer: CheckAuthorizer, check: Check) -> Decision:
    try:
        return await authorizer.authorize(check)
    except Exception as error:
        return Decision(NO_OPINION, error=str(error) or type(error).__name__)


# -- the messages CEL sees: each builder's state as canonical JSON


@lru_cache(maxsize=1024)
def _decoded(value: str) -> dict[str, Any]:
    """A message's state (shared: read it, never change it)."""
    state: dict[str, Any] = orjson.loads(value) if value else {}
    return state


def _state(message: Any) -> dict[str, Any]:
    return _decoded(message.value)


def _message(cls: Any, state: Mapping[str, Any]) -> Any:
    return cls(value=orjson.dumps({k: v for k, v in state.items() if v},
                                  option=orjson.OPT_SORT_KEYS).decode())


def check_of(receiver: Any, verb: str) -> Check:
    """The check a PathCheck or ResourceCheck message makes with verb."""
    return _check(receiver.DESCRIPTOR.full_name, receiver.value, verb)


@lru_cache(maxsize=1024)
def _check(type_name: str, value: str, verb: str) -> Check:
    state = _decoded(value)
    account = state.get("serviceAccount")
    service_account = ServiceAccount(*account) if account else None
    if type_name == PATH_CHECK:
        return Check(verb, path=state.get("path", ""), service_account=service_account)
    return Check(verb, resource_request=True, group=state.get("group", ""),
                 resource=state.get("resource", ""),
                 subresource=state.get("subresource", ""),
                 namespace=state.get("namespace", ""), name=state.get("name", ""),
                 field_selector=state.get("fieldSelector", ""),
                 label_selector=state.get("labelSelector", ""),
                 service_account=service_account)


def decision_message(decision: Decision) -> Any:
    return t.Decision(value=_decision_value(decision))


@lru_cache(maxsize=1024)
def _decision_value(decision: Decision) -> str:
    state: dict[str, Any] = {"decision": decision.decision, "reason": decision.reason}
    if decision.error is not None:
        state["error"] = decision.error
    return orjson.dumps(state).decode()


def _principal(message: Any) -> dict[str, Any]:
    account = _state(message).get("serviceAccount")
    return {"serviceAccount": account} if account else {}


def _path(authorizer: Any, path: str) -> Any:
    if not path.strip():
        raise ValueError("path must not be empty")
    return _message(t.PathCheck, {**_principal(authorizer), "path": path})


def _group(authorizer: Any, group: str) -> Any:
    return _message(t.GroupCheck, {**_principal(authorizer), "group": group})


def _service_account(authorizer: Any, namespace: str, name: str) -> Any:
    if dns1123_subdomain(name):
        raise ValueError("Invalid service account name")
    if dns1123_label(namespace):
        raise ValueError("Invalid service account namespace")
    return _message(t.Authorizer, {"serviceAccount": [namespace, name]})


def _resource(group_check: Any, resource: str) -> Any:
    if not resource.strip():
        raise ValueError("resource must not be empty")
    return _message(t.ResourceCheck, {**_state(group_check), "resource": resource})


def _setter(key: str) -> Callable[[Any, str], Any]:
    def set_(resource_check: Any, value: str) -> Any:
        return _message(t.ResourceCheck, {**_state(resource_check), key: value})
    return set_


def _decision(message: Any) -> dict[str, Any]:
    return _decoded(message.value)


R = RESOURCE_CHECK
FUNCTIONS: tuple[Function, ...] = (
    member("path", "authorizer_path", (AUTHORIZER, "string"), PATH_CHECK, _path),
    member("group", "authorizer_group", (AUTHORIZER, "string"), GROUP_CHECK, _group),
    member("serviceAccount", "authorizer_serviceaccount", (AUTHORIZER, "string", "string"),
           AUTHORIZER, _service_account),
    member("resource", "groupcheck_resource", (GROUP_CHECK, "string"), R, _resource),
    member("subresource", "resourcecheck_subresource", (R, "string"), R,
           _setter("subresource")),
    member("namespace", "resourcecheck_namespace", (R, "string"), R, _setter("namespace")),
    member("name", "resourcecheck_name", (R, "string"), R, _setter("name")),
    member("fieldSelector", "authorizer_fieldselector", (R, "string"), R,
           _setter("fieldSelector")),
    member("labelSelector", "authorizer_labelselector", (R, "string"), R,
           _setter("labelSelector")),
    Function("check", (
        member("check", "pathcheck_check", (PATH_CHECK, "string"), DECISION, None).overloads
        + member("check", "resourcecheck_check", (R, "string"), DECISION, None).overloads)),
    member("errored", "decision_errored", (DECISION,), "bool",
           lambda d: "error" in _decision(d)),
    member("error", "decision_error", (DECISION,), "string",
           lambda d: _decision(d).get("error", "")),
    member("allowed", "decision_allowed", (DECISION,), "bool",
           lambda d: _decision(d).get("decision") == ALLOW),
    member("reason", "decision_reason", (DECISION,), "string",
           lambda d: _decision(d).get("reason", "")),
)
