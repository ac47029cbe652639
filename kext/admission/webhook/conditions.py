"""A webhook's matchConditions (cf. apiserver's webhook/matchconditions): CEL expressions
over `object`, `oldObject` and `request` (the AdmissionReview's request without the objects),
compiled with kext.cel once per webhook and evaluated after its rules and selectors matched:

- a condition that is false: the webhook is not called;
- one that fails (and none false): under failurePolicy Fail the request is refused with 403
  `<resource>.<group> "<name>" is forbidden: expression '<expr>' resulted in error: ...`;
  under Ignore the webhook is not called;
- all true: the webhook is called.

kext's CEL has no `authorizer` variable: a condition using it does not compile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Object = dict[str, Any]

VARIABLES = ("object", "oldObject", "request")
_DECLARED = {name: "dyn" for name in VARIABLES}


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
        self._environment: Any = None
        self._compiled: dict[tuple[MatchCondition, ...], list[tuple[str, Any]]] = {}

    def _env(self) -> Any:
        if self._environment is None:
            from kext.cel import Environment  # imported when a webhook has conditions

            self._environment = Environment("kext.admission", variables=VARIABLES)
            self._environment.seal()
        return self._environment

    def compile_problem(self, expression: str) -> str:
        """Why expression does not compile as a matchCondition (kube's words), or ""."""
        from kext.cel import CompileError

        try:
            self._env().compile_expression(expression, _DECLARED)
        except CompileError as error:
            return str(error)
        return ""

    def _programs(self, conditions: tuple[MatchCondition, ...]) -> list[tuple[str, Any]]:
        programs = self._compiled.get(conditions)
        if programs is None:
            from kext.cel import CompileError

            programs = []
            for condition in conditions:
                try:
                    compiled: Any = self._env().compile_expression(condition.expression,
                                                                   _DECLARED)
                except CompileError as error:
                    compiled = ConditionError(f"compilation error: {error}")
                programs.append((condition.expression, compiled))
            self._compiled[conditions] = programs
        return programs

    def matches(self, conditions: Sequence[MatchCondition], obj: Object | None,
                old: Object | None, request: Object) -> bool:
        """Whether every condition holds; ConditionError (kube's aggregate of the errors)
        when none is false and some failed."""
        env = self._env()
        activation = env.bind({"object": obj, "oldObject": old, "request": request})
        return conditions_hold(self._programs(tuple(conditions)), activation)


def conditions_hold(programs: Sequence[tuple[str, Any]], activation: Any,
                    explain: Callable[[str], str] | None = None) -> bool:
    """Whether every compiled condition (expression, Program or the ConditionError of its
    compilation) holds for activation, as kube's matchconditions matcher decides: False as
    soon as one is false; else ConditionError (the errors aggregated) when some failed.
    explain words an evaluation error (an admission policy's variables)."""
    from kext.cel import EvaluationError

    failures: list[str] = []
    for expression, program in programs:
        if isinstance(program, ConditionError):
            failures.append(str(program))
            continue
        try:
            result = program.evaluate(activation)
        except EvaluationError as error:
            why = explain(str(error)) if explain is not None else str(error)
            failures.append(f"expression '{expression}' resulted in error: {why}")
            continue
        if result is False:
            return False
        if result is not True:
            failures.append(f"expression '{expression}' resulted in error: expected a bool")
    if failures:
        raise ConditionError(failures[0] if len(failures) == 1
                             else "[" + ", ".join(failures) + "]")
    return True
