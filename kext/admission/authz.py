"""The `authorizer` of admission CEL (webhook matchConditions; ValidatingAdmissionPolicy
expressions): the authz library's checks (kext.cel) decided by the server's Authorizer for
the request's user, or for the service account `authorizer.serviceAccount(ns, name)` names.

CEL evaluation is synchronous and kext's authorizers are asynchronous, so `with_authorizer`
evaluates in rounds: it runs the evaluation, has the authorizer decide the checks it asked
for and could not be answered yet (concurrently, each once), and runs it again with those
decisions, until it asks for nothing new. CEL has no side effects: the last run, in which
every check was answered by its decision, is the evaluation kube makes calling its
authorizer inline, and the earlier runs leave nothing behind. As kube's, an authorizer
error is not an evaluation error: the check's Decision has errored() true and error() its
text.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TypeVar

from kext.api import errors
from kext.api.selectors import (
    DOES_NOT_EXIST,
    DOUBLE_EQUALS,
    EQUALS,
    EXISTS,
    IN,
    NOT_EQUALS,
    NOT_IN,
    parse_field_selector,
    parse_label_selector,
)
from kext.auth.authorization.authorizer import Attributes, Authorizer, SelectorRequirement
from kext.auth.authorization.authorizer import Decision as AuthorizerDecision
from kext.auth.user import UserInfo
from kext.cel import AuthorizerValue, Check, Decision, ServiceAccount, authorized

T = TypeVar("T")

# cf. k8s.io/apiserver pkg/authentication/serviceaccount
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
ALL_SERVICE_ACCOUNTS = "system:serviceaccounts"


def service_account_user(account: ServiceAccount) -> UserInfo:
    """The user a service account authenticates as (cf. ServiceAccountInfo.UserInfo)."""
    return UserInfo(f"{SERVICE_ACCOUNT_PREFIX}{account.namespace}:{account.name}",
                    (ALL_SERVICE_ACCOUNTS, f"{ALL_SERVICE_ACCOUNTS}:{account.namespace}"))


def check_attributes(check: Check, user: UserInfo) -> Attributes:
    """What the authorizer is asked for a check (cf. pathCheckVal and resourceCheckVal's
    Authorize): a resource check is for every version ("*"), narrowed by its selectors."""
    if check.service_account is not None:
        user = service_account_user(check.service_account)
    if not check.resource_request:
        return Attributes(user=user, verb=check.verb, is_resource_request=False,
                          path=check.path)
    return Attributes(user=user, verb=check.verb, is_resource_request=True, path="",
                      namespace=check.namespace, api_group=check.group, api_version="*",
                      resource=check.resource, subresource=check.subresource,
                      name=check.name, field_selector=field_requirements(check.field_selector),
                      label_selector=label_requirements(check.label_selector))


def field_requirements(selector: str) -> tuple[SelectorRequirement, ...]:
    """A field selector's requirements as a SubjectAccessReview has them; none when it does
    not parse (as kube: a selector only narrows a check, so leaving it out is broader)."""
    if not selector:
        return ()
    try:
        terms = parse_field_selector(selector).terms
    except errors.StatusError:
        return ()
    return tuple(SelectorRequirement(t.field, "In" if t.equal else "NotIn", (t.value,))
                 for t in terms)


_LABEL_OPERATORS = {EQUALS: "In", DOUBLE_EQUALS: "In", IN: "In", NOT_EQUALS: "NotIn",
                    NOT_IN: "NotIn", EXISTS: "Exists", DOES_NOT_EXIST: "DoesNotExist"}


def label_requirements(selector: str) -> tuple[SelectorRequirement, ...]:
    """A label selector's requirements as a SubjectAccessReview has them (gt and lt left
    out, as kube leaves them); none when it does not parse."""
    if not selector:
        return ()
    try:
        requirements = parse_label_selector(selector).requirements
    except errors.StatusError:
        return ()
    return tuple(SelectorRequirement(r.key, _LABEL_OPERATORS[r.operator], r.values)
                 for r in requirements if r.operator in _LABEL_OPERATORS)


class RequestAuthorizer:
    """The server's authorizer deciding one request's checks (kext.cel's CheckAuthorizer)."""

    def __init__(self, authorizer: Authorizer, user: UserInfo) -> None:
        self.authorizer = authorizer
        self.user = user

    async def authorize(self, check: Check) -> Decision:
        decision, reason = await self.authorizer.authorize(check_attributes(check, self.user))
        return Decision(decision.value, reason)


class NoAuthorizer:
    """The authorizer of admission built without the server's (kext.admission on its own):
    every check is errored."""

    async def authorize(self, attributes: Attributes) -> tuple[AuthorizerDecision, str]:
        raise RuntimeError("no authorizer is configured")


async def with_authorizer(evaluate: Callable[[AuthorizerValue], T], authorizer: Authorizer,
                          user: UserInfo | None, *,
                          decisions: MutableMapping[Check, Decision] | None = None) -> T:
    """What `evaluate` returns (or raises) once the checks it asks for are decided by
    authorizer for user (None: a request without one, as kube's nil user). evaluate runs
    CEL synchronously, binding the AuthorizerValue it is given (Environment.bind(values,
    authorizer=value, request_resource=...), one activation per expression); it may run
    several times (see the module docstring). `decisions` shared by the calls of one
    request keep each check to one decision per request, as kube's CachingAuthorizer does
    for admission policies (errors included)."""
    return await authorized(evaluate, RequestAuthorizer(authorizer, user or UserInfo("")),
                            decisions=decisions)
