"""A ValidatingAdmissionPolicy compiled, and its evaluation for one binding and one param
(cf. apiserver's policy/validating validator.go, plugin.go's compilePolicy and
plugin/cel/composition.go).

Every expression is compiled once, with kext.cel, when the policy is loaded, over the
variables kube declares: `object`, `oldObject`, `request`, `namespaceObject`, `params` (only
when the policy has a paramKind) and `variables` (an object whose fields are the variables
declared before the expression's own: naming another fails to compile, as in kube). A
compilation error does not stop the others: it fails the expression when evaluated, under the
policy's failurePolicy.

Every expression but messageExpression may also use `authorizer` (kext.admission.authz).

`CompiledPolicy.validate(activation, authorizer, resource)` is synchronous: one activation
(the variables above but `variables`, as a dict) and the evaluation's AuthorizerValue in, the
decisions out (the dispatcher runs it under `with_authorizer`, which decides the checks).
Variables are evaluated when an expression needs them, at most once per validate call; one
that fails fails only the expressions that read it (`composited variable "<name>" fails to
evaluate: ...`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kext.admission.policy.definition import DEFAULT_REASON, Policy, Validation
from kext.admission.webhook.conditions import ConditionError, conditions_hold
from kext.cel import AUTHORIZER_VARIABLES, AuthorizerValue, Resource

OBJECT, OLD_OBJECT, REQUEST = "object", "oldObject", "request"
PARAMS, NAMESPACE_OBJECT, VARIABLES = "params", "namespaceObject", "variables"
# what an activation holds (validate adds `variables`)
ACTIVATION = (OBJECT, OLD_OBJECT, REQUEST, PARAMS, NAMESPACE_OBJECT)
_STRING: dict[str, Any] = {"type": "string"}
_GVK = {"type": "object", "properties": {"group": _STRING, "version": _STRING, "kind": _STRING}}
_GVR = {"type": "object",
        "properties": {"group": _STRING, "version": _STRING, "resource": _STRING}}
# `request` as kube declares it (cel.BuildRequestType): naming another field fails to compile
REQUEST_SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "kind": _GVK, "resource": _GVR, "subResource": _STRING, "requestKind": _GVK,
    "requestResource": _GVR, "requestSubResource": _STRING, "name": _STRING,
    "namespace": _STRING, "operation": _STRING,
    "userInfo": {"type": "object", "properties": {
        "username": _STRING, "uid": _STRING,
        "groups": {"type": "array", "items": _STRING},
        "extra": {"type": "object",
                  "additionalProperties": {"type": "array", "items": _STRING}}}},
    "dryRun": {"type": "boolean"}, "options": {}}}
MAX_MESSAGE_BYTES = 5 * 1024  # celconfig.MaxEvaluatedMessageExpressionSizeBytes
MATCH_CONDITIONS_BUDGET = 2_500_000  # celconfig.RuntimeCELCostBudgetMatchConditions

ACTION_ADMIT, ACTION_DENY = "admit", "deny"  # a decision's action
EVAL_ADMIT, EVAL_DENY, EVAL_ERROR = "admit", "deny", "error"  # how it was reached
PUBLISH, EXCLUDE, ERROR = "publish", "exclude", "error"  # an audit annotation's action


@dataclass(frozen=True)
class Decision:
    """What one validation decided (cf. PolicyDecision); reason only on a denial."""

    action: str
    evaluation: str
    message: str = ""
    reason: str = ""
    elapsed: float = 0.0  # seconds the expression took


@dataclass(frozen=True)
class AuditAnnotationResult:
    """What one auditAnnotation's valueExpression gave (cf. PolicyAuditAnnotation)."""

    key: str
    action: str
    value: str = ""
    error: str = ""
    elapsed: float = 0.0


@dataclass
class ValidateResult:
    decisions: list[Decision] = field(default_factory=list)
    audit_annotations: list[AuditAnnotationResult] = field(default_factory=list)


@dataclass
class _Expression:
    """One compiled expression: its program, or why it did not compile; the variables it
    reads, directly or through other variables."""

    expression: str
    program: Any = None
    error: str = ""
    uses: frozenset[str] = frozenset()
    fixed_cost: int | None = None  # its cost when that does not depend on the values' sizes


class CompiledPolicy:
    """A policy's expressions, compiled."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.failure_policy = policy.failure_policy
        self.variables: dict[str, _Expression] = {}
        self.conditions: list[tuple[str, _Expression]] = []  # (name, expression)
        self.validations: list[tuple[Validation, _Expression, _Expression | None]] = []
        self.audit_annotations: list[tuple[str, _Expression]] = []
        self.order: list[str] = [v.name for v in policy.variables]
        self.uses_authorizer = False  # some expression checks with `authorizer`
        self._compile()

    def _compile(self) -> None:
        from kext.cel import Environment
        from kext.cel.cost import estimate

        policy = self.policy
        names = [v.name for v in policy.variables]
        env = Environment("kext.policy",
                          variables=(*ACTIVATION, VARIABLES, *AUTHORIZER_VARIABLES))
        # the variables an expression may read: those declared before it
        scopes = [env.declare_object(names[:i]) for i in range(len(names) + 1)]
        request = env.declare(REQUEST_SCHEMA)
        env.seal()
        self.environment = env
        declared = {OBJECT: "dyn", OLD_OBJECT: "dyn", REQUEST: request, NAMESPACE_OBJECT: "dyn"}
        if policy.param_kind is not None:
            declared[PARAMS] = "dyn"

        def compiled(expression: str, scope: str, result: str,
                     authorizer: bool = True) -> _Expression:
            from kext.cel import CompileError

            variables = {**declared, VARIABLES: scope}
            if authorizer:  # kube's messageExpression has no authorizer
                variables.update(AUTHORIZER_VARIABLES)
            try:
                program = env.compile_expression(expression, variables, result=result)
            except CompileError as error:
                return _Expression(expression, error=str(error))
            if program.uses(*AUTHORIZER_VARIABLES):
                self.uses_authorizer = True
            direct = _variables_read(program.tree)
            uses = set(direct)
            for name in direct:
                uses |= self.variables[name].uses if name in self.variables else set()
            none = estimate(program.tree, _no_size, _COST_PATHS)
            huge = estimate(program.tree, _huge_size, _COST_PATHS)
            return _Expression(expression, program, uses=frozenset(uses),
                               fixed_cost=none if none == huge else None)

        for i, variable in enumerate(policy.variables):
            self.variables[variable.name] = compiled(variable.expression, scopes[i], "dyn")
        everything = scopes[-1]
        self.conditions = [(c.name, compiled(c.expression, everything, "bool"))
                           for c in policy.match_conditions]
        self.validations = [
            (v, compiled(v.expression, everything, "bool"),
             compiled(v.message_expression, everything, "string", authorizer=False)
             if v.message_expression else None)
            for v in policy.validations]
        # string or null, checked when evaluated (kext's CEL types one result at compile time)
        self.audit_annotations = [(a.key, compiled(a.value_expression, everything, "dyn"))
                                  for a in policy.audit_annotations]

    def compile_problems(self) -> list[tuple[str, str, str]]:
        """(field path, expression, why) of every expression that does not compile, with
        the paths of the policy's manifest."""
        problems = []
        for i, variable in enumerate(self.policy.variables):
            if self.variables[variable.name].error:
                problems.append((f"spec.variables[{i}].expression", variable.expression,
                                 self.variables[variable.name].error))
        for i, (_, condition) in enumerate(self.conditions):
            if condition.error:
                problems.append((f"spec.matchConditions[{i}].expression", condition.expression,
                                 condition.error))
        for i, (_, rule, message) in enumerate(self.validations):
            if rule.error:
                problems.append((f"spec.validations[{i}].expression", rule.expression,
                                 rule.error))
            if message is not None and message.error:
                problems.append((f"spec.validations[{i}].messageExpression",
                                 message.expression, message.error))
        for i, (_, annotation) in enumerate(self.audit_annotations):
            if annotation.error:
                problems.append((f"spec.auditAnnotations[{i}].valueExpression",
                                 annotation.expression, annotation.error))
        return problems

    def validate(self, activation: Mapping[str, Any], authorizer: AuthorizerValue | None = None,
                 resource: Resource | None = None) -> ValidateResult:
        """Evaluate the policy for one activation (object, oldObject, request, params,
        namespaceObject): its matchConditions, then its validations and audit annotations,
        as kube's validator.Validate does; authorizer answers `authorizer`'s checks, resource
        is `authorizer.requestResource`."""
        evaluation = _Evaluation(self, activation, authorizer, resource)
        fail = self.failure_policy != "Ignore"
        error_action = ACTION_DENY if fail else ACTION_ADMIT
        try:
            if self.conditions and not self._conditions_hold(evaluation):
                return ValidateResult()
        except (ConditionError, OutOfBudget) as failed:
            if not fail:
                return ValidateResult()
            return ValidateResult([Decision(ACTION_DENY, EVAL_ERROR, str(failed))])
        evaluation.new_round()
        try:
            decisions = self._validations(evaluation, error_action)
        except OutOfBudget as spent:
            return ValidateResult([Decision(error_action, EVAL_ERROR, str(spent))])
        evaluation.new_round()
        try:
            annotations = self._audit_annotations(evaluation, fail)
        except OutOfBudget as spent:
            return ValidateResult([Decision(error_action, EVAL_ERROR, str(spent))])
        return ValidateResult(decisions, annotations)

    def _conditions_hold(self, evaluation: _Evaluation) -> bool:
        programs = [(e.expression, e.program if e.program is not None
                     else ConditionError(f"compilation error: {e.error}"))
                    for _, e in self.conditions]
        activation = evaluation.bind(frozenset().union(*(e.uses for _, e in self.conditions)))
        for _, condition in self.conditions:  # kube evaluates them all, then decides
            if condition.program is not None:
                too_costly = evaluation.charge(condition)
                if too_costly:
                    raise ConditionError(f"expression '{condition.expression}' resulted in "
                                         f"error: {too_costly}")
        return conditions_hold(programs, activation, evaluation.explain)

    def _validations(self, evaluation: _Evaluation, error_action: str) -> list[Decision]:
        if not self.validations:
            return []
        uses = frozenset().union(*(e.uses for _, e, m in self.validations),
                                 *(m.uses for _, _, m in self.validations if m is not None))
        activated = evaluation.bind(uses)
        decisions = []
        for validation, rule, message_expression in self.validations:
            started = time.perf_counter()
            result, error = evaluation.run(rule, activated)
            elapsed = time.perf_counter() - started
            if error:
                decisions.append(Decision(error_action, EVAL_ERROR, error, elapsed=elapsed))
            elif result is True:
                decisions.append(Decision(ACTION_ADMIT, EVAL_ADMIT, elapsed=elapsed))
            else:
                message = ""
                if message_expression is not None:
                    message = _message(*evaluation.run(message_expression, activated))
                if not message:
                    message = validation.message.strip()
                if not message:
                    message = f"failed expression: {validation.expression.strip()}"
                decisions.append(Decision(ACTION_DENY, EVAL_DENY, message,
                                          validation.reason or DEFAULT_REASON, elapsed))
        return decisions

    def _audit_annotations(self, evaluation: _Evaluation,
                           fail: bool) -> list[AuditAnnotationResult]:
        if not self.audit_annotations:
            return []
        annotations = []
        activated = evaluation.bind(frozenset().union(
            *(e.uses for _, e in self.audit_annotations)))
        for key, expression in self.audit_annotations:
            started = time.perf_counter()
            outcome = evaluation.run(expression, activated)
            annotations.append(dataclasses.replace(
                _annotation(key, expression, outcome, fail),
                elapsed=time.perf_counter() - started))
        return annotations


def _message(result: Any, error: str) -> str:
    """A messageExpression's message, or "" when it gives none usable (an error, not a
    string, blank, too long or on several lines: kube falls back to the message)."""
    if error or not isinstance(result, str):
        return ""
    message = result.strip()
    if len(message.encode()) > MAX_MESSAGE_BYTES or "\n" in message:
        return ""
    return message


def _annotation(key: str, expression: _Expression, outcome: tuple[Any, str],
                fail: bool) -> AuditAnnotationResult:
    result, error = outcome
    if error:
        return AuditAnnotationResult(key, ERROR if fail else EXCLUDE, error=error)
    if result is None:
        return AuditAnnotationResult(key, EXCLUDE)
    if isinstance(result, str):
        value = result.strip()
        return AuditAnnotationResult(key, PUBLISH, value) if value else \
            AuditAnnotationResult(key, EXCLUDE)
    return AuditAnnotationResult(key, ERROR, error=(
        f"valueExpression '{expression.expression}' resulted in unsupported return type: "
        f"{_cel_type_name(result)}. Return type must be either string or null."))


def _cel_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    descriptor = getattr(value, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", type(value).__name__))


OUT_OF_BUDGET = ("validation failed due to running out of cost budget, no further validation "
                 "rules will be run")
_COST_PATHS: dict[str, tuple[str, ...]] = {name: (name,) for name in (*ACTIVATION, VARIABLES)}


def _no_size(path: tuple[str, ...]) -> int:
    return 0


def _huge_size(path: tuple[str, ...]) -> int:
    return 1 << 20


class OutOfBudget(Exception):
    """The evaluation round's cost budget is spent (kube's words)."""


def _variables_read(tree: Any) -> set[str]:
    """The names of `variables.<name>` an expression's tree selects."""
    return {e.name for e in tree.walk()
            if e.kind == "select" and e.args and e.args[0].kind == "ident"
            and e.args[0].name == VARIABLES}


class _Evaluation:
    """One validate call: the activation, and in each of kube's evaluation rounds
    (matchConditions, validations with their messages, audit annotations) the variables
    evaluated so far and the cost budget left. Like kube, a round starts afresh: its own
    budget, its variables evaluated again; the conditions' round sees no namespaceObject."""

    def __init__(self, compiled: CompiledPolicy, activation: Mapping[str, Any],
                 authorizer: AuthorizerValue | None = None,
                 resource: Resource | None = None) -> None:
        from kext.cel import PER_CALL_LIMIT, RUNTIME_COST_BUDGET, EvaluationError, value_sizer
        from kext.cel.cost import estimate

        self._estimate, self._per_call, self._error = estimate, PER_CALL_LIMIT, EvaluationError
        self._full_budget, self._value_sizer = RUNTIME_COST_BUDGET, value_sizer
        self.compiled = compiled
        self.authorizer, self.resource = authorizer, resource
        self.activation = {name: activation.get(name) for name in ACTIVATION}
        self.new_round(conditions=True)

    def new_round(self, *, conditions: bool = False) -> None:
        self.base = dict(self.activation)
        if conditions:  # as kube's matchconditions matcher: no namespace, a smaller budget
            self.base[NAMESPACE_OBJECT] = None
        self.values: dict[str, Any] = {}
        self.failed: dict[str, str] = {}
        self.budget = MATCH_CONDITIONS_BUDGET if conditions else self._full_budget
        sizers = {name: self._value_sizer(value) for name, value in self.base.items()}
        sizers[VARIABLES] = self._value_sizer(self.values)  # sees each variable evaluated
        self._sizers = sizers

    def charge(self, expression: _Expression) -> str:
        """Take an expression's cost (estimated from the sizes of the values it reads) from
        the budget: OutOfBudget when it is spent, the expression's own error when it alone
        costs more than one call may."""
        cost = expression.fixed_cost
        if cost is None:
            sizers = self._sizers
            cost = self._estimate(
                expression.program.tree,
                lambda path: sizers[path[0]](path) if path and path[0] in sizers else 0,
                _COST_PATHS)
        if cost > self._per_call:
            return "operation cancelled: actual cost limit exceeded"
        if cost > self.budget:
            raise OutOfBudget(OUT_OF_BUDGET)
        self.budget -= cost
        return ""

    def bind(self, uses: Iterable[str]) -> Any:
        """The activation of expressions reading the variables in uses (evaluated first,
        in their order: each may read those before it)."""
        wanted = set(uses)
        env = self.compiled.environment
        for name in self.compiled.order:
            if name not in wanted or name in self.values or name in self.failed:
                continue
            variable = self.compiled.variables[name]
            if variable.error:
                self.failed[name] = (f'composited variable "{name}" fails to compile: '
                                     f"{variable.error}")
                continue
            result, error = self._evaluate(variable, self._activation(env, variable.uses))
            if error:
                self.failed[name] = f'composited variable "{name}" fails to evaluate: {error}'
            else:
                self.values[name] = result
        return self._activation(env, wanted)

    def _activation(self, env: Any, uses: Iterable[str]) -> Any:
        # one activation per expression (each binds the authorizer anew: see AuthorizerValue)
        return env.bind({**self.base, VARIABLES: {
            name: self.values[name] for name in uses if name in self.values}},
            authorizer=self.authorizer, request_resource=self.resource)

    def _evaluate(self, expression: _Expression, activation: Any) -> tuple[Any, str]:
        too_costly = self.charge(expression)
        if too_costly:
            return None, too_costly
        try:
            return expression.program.evaluate(activation), ""
        except self._error as error:
            return None, self.explain(str(error))

    def run(self, expression: _Expression, activation: Any) -> tuple[Any, str]:
        """The result of one expression, or kube's text of why it has none."""
        if expression.error:
            return None, f"compilation error: {expression.error}"
        result, error = self._evaluate(expression, activation)
        if error:
            return None, f"expression '{expression.expression}' resulted in error: {error}"
        return result, ""

    def explain(self, error: str) -> str:
        """An evaluation error in kube's words: reading a variable that failed is that
        variable's failure (it is left out of `variables`, so reading it finds no key)."""
        for name, why in self.failed.items():
            if error == f"no such key: {name}":
                return why
        return error
