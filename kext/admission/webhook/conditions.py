"""A webhook's matchConditions (cf. apiserver's webhook/matchconditions): CEL expressions
over `object`, `oldObject`, `request` (the AdmissionReview's request without the objects)
and `authorizer` (kext.admission.authz: checks decided by the server's authorizer for the
request's user; `authorizer.requestResource` is the resource the webhook matched), compiled
with kext.cel once per webhook and evaluated after its rules and selectors matched:

- a condition that is false: the webhook is not called;
- one that fails (and none false): under failurePolicy Fail the request is refused with 403
  `<resource>.<group> "<name>" is forbidden: expression '<expr>' resulted in error: ...`;
  under Ignore the webhook is not called;
- all true: the webhook is called.

Every condition is evaluated (as kube does), so the authorization checks of different
conditions are made concurrently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kext.admission.authz import NoAuthorizer, with_authorizer
from kext.auth.authorization.authorizer import Authorizer
from kext.auth.user import UserInfo
from kext.cel import (
    AUTHORIZER_VARIABLES,
    AuthorizerValue,
    CompileError,
    Environment,
    EvaluationError,
    Resource,
)

Object = dict[str, Any]

VARIABLES = ("object", "oldObject", "request", *AUTHORIZER_VARIABLES)
_DECLARED = {"object": "dyn", "oldObject": "dyn", "request": "dyn", **AUTHORIZER_VARIABLES}


@dataclass(frozen=True)
class MatchCondition:
    """A CEL expression that must be true for the webhook to be called."""

    name: str
    expression: str


class ConditionError(Exception):
    """A condition that did not evaluate; the text is kube's."""


class MatchConditions:
    """Compiles and evaluates matchConditions in one CEL environment (kept per server)."""

    def __init__(self) -> None:
        self._environment: Environment | None = None
        self._compiled: dict[tuple[MatchCondition, ...], list[tuple[str, Any]]] = {}
        self._use_authorizer: dict[tuple[MatchCondition, ...], bool] = {}

    def _env(self) -> Environment:
        if self._environment is None:
            self._environment = Environment("kext.admission", variables=VARIABLES)
            self._environment.seal()
        return self._environment

    def compile_problem(self, expression: str) -> str:
        """Why expression does not compile as a matchCondition (kube's words), or ""."""
        try:
            self._env().compile_expression(expression, _DECLARED)
        except CompileError as error:
            return str(error)
        return ""

    def _programs(self, conditions: tuple[MatchCondition, ...]) -> list[tuple[str, Any]]:
        programs = self._compiled.get(conditions)
        if programs is None:
            programs = []
            for condition in conditions:
                try:
                    compiled: Any = self._env().compile_expression(condition.expression,
                                                                   _DECLARED)
                except CompileError as error:
                    compiled = ConditionError(f"compilation error: {error}")
                programs.append((condition.expression, compiled))
            self._compiled[conditions] = programs
            self._use_authorizer[conditions] = any(
                not isinstance(p, ConditionError) and p.uses(*AUTHORIZER_VARIABLES)
                for _, p in programs)
        return programs

    async def matches(self, conditions: Sequence[MatchCondition], obj: Object | None,
                      old: Object | None, request: Object, *,
                      authorizer: Authorizer | None = None, user: UserInfo | None = None,
                      resource: Resource | None = None) -> bool:
        """Whether every condition holds; ConditionError (kube's aggregate of the errors)
        when none is false and some failed. `authorizer` decides the checks of conditions
        that use it, for user; resource is `authorizer.requestResource`."""
        key = tuple(conditions)
        programs = self._programs(key)
        values = {"object": obj, "oldObject": old, "request": request}
        if self._use_authorizer[key]:
            outcomes = await with_authorizer(
                lambda value: self._evaluate(programs, values, value, resource),
                authorizer or NoAuthorizer(), user)
        else:
            outcomes = self._evaluate(programs, values, None, None)
        return decide(outcomes)

    def _evaluate(self, programs: list[tuple[str, Any]], values: dict[str, Any],
                  authorizer: AuthorizerValue | None,
                  resource: Resource | None) -> list[bool | str]:
        """Each condition's outcome: True, False, or why it failed."""
        env = self._env()
        shared = env.bind(values) if authorizer is None else None
        # with an authorizer, an activation per expression (see AuthorizerValue)
        return [outcome(expression, program, shared if shared is not None else env.bind(
                    values, authorizer=authorizer, request_resource=resource))
                for expression, program in programs]


def outcome(expression: str, program: Any, activation: Any,
            explain: Callable[[str], str] | None = None) -> bool | str:
    """One compiled condition's outcome for activation: True, False, or why it failed
    (program may be the ConditionError of its compilation); explain words an evaluation
    error (an admission policy's variables)."""
    if isinstance(program, ConditionError):
        return str(program)
    try:
        result = program.evaluate(activation)
    except EvaluationError as error:
        why = explain(str(error)) if explain is not None else str(error)
        return f"expression '{expression}' resulted in error: {why}"
    if isinstance(result, bool):
        return result
    return f"expression '{expression}' resulted in error: expected a bool"


def decide(outcomes: Sequence[bool | str]) -> bool:
    """As kube's matchconditions matcher decides: False when one is false; else
    ConditionError (the errors aggregated) when some failed; else True."""
    if False in outcomes:
        return False
    failures = [o for o in outcomes if isinstance(o, str)]
    if failures:
        raise ConditionError(failures[0] if len(failures) == 1
                             else "[" + ", ".join(failures) + "]")
    return True


def conditions_hold(programs: Sequence[tuple[str, Any]], activation: Any,
                    explain: Callable[[str], str] | None = None) -> bool:
    """Whether every compiled condition (expression, Program or the ConditionError of its
    compilation) holds for activation, decided as `decide` does."""
    return decide([outcome(expression, program, activation, explain)
                   for expression, program in programs])
