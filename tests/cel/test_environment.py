"""kext.cel's environment beyond CRD rules: expressions over other variables (what admission
policies and webhook matchConditions will use), the optional rewrites, and cost estimates."""

from __future__ import annotations

import pytest

from kext import cel
from kext.cel.environment import rewrite_optionals


def test_expressions_over_their_own_variables() -> None:
    env = cel.Environment("kext.admission", variables=("object", "oldObject", "request"))
    env.seal()
    program = env.compile_expression(
        "request.operation == 'CREATE' && object.spec.replicas <= 5",
        {"object": "dyn", "request": "map(string, dyn)"})
    bound = env.bind({"object": {"spec": {"replicas": 3}}, "request": {"operation": "CREATE"}})
    assert program.evaluate(bound) is True
    with pytest.raises(cel.CompileError, match="undeclared reference to 'params"):
        env.compile_expression("params.max > 1", {"object": "dyn"})
    with pytest.raises(ValueError, match="params"):
        env.compile_expression("true", {"params": "dyn"})


def test_message_expressions_must_return_strings() -> None:
    env = cel.Environment()
    env.seal()
    assert env.compile("'a' + 'b'", "dyn", result="string").evaluate(env.activation(1)) == "ab"
    with pytest.raises(cel.CompileError, match="must evaluate to a string"):
        env.compile("1 + 1", "int", result="string")


def test_optional_rewrites_leave_string_literals_alone() -> None:
    assert rewrite_optionals("self == 'x.validate(y)'") == "self == 'x.validate(y)'"
    assert rewrite_optionals("format.named('a').hasValue()") == \
        "format.__kextNamed('a')[?0].hasValue()"


def cost_of(schema: dict, rule: str) -> int:
    env = cel.Environment()
    self_type = env.declare(schema)
    env.seal()
    return cel.estimated_cost(env.compile(rule, self_type), cel.schema_sizer(schema))


def test_costs_grow_with_the_sizes_the_schema_allows() -> None:
    bounded = {"type": "array", "maxItems": 25, "items": {"type": "string", "maxLength": 10}}
    unbounded = {"type": "array", "items": {"type": "string"}}
    rule = "self.all(x, x.contains('a string'))"
    assert cost_of(bounded, rule) < 200
    assert cost_of(unbounded, rule) > 100 * cel.STATIC_ESTIMATED_COST_LIMIT
    assert cost_of({"type": "integer"}, "self > 0") < 5


def test_actual_sizes_bound_the_runtime_estimate() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    env = cel.Environment()
    self_type = env.declare(schema)
    env.seal()
    program = env.compile("self.all(x, x.contains('a'))", self_type)
    small = cel.estimated_cost(program, cel.value_sizer(["ab", "cd"]))
    large = cel.estimated_cost(program, cel.value_sizer(["a" * 1000] * 100))
    assert small < 20 < large


def test_mixed_type_literals_are_refused_as_cel_go_refuses_them() -> None:
    env = cel.Environment()
    env.seal()
    with pytest.raises(cel.CompileError) as refused:
        env.compile("[1, 'a'].size() == 2", "dyn")
    assert str(refused.value) == (
        "compilation failed: ERROR: <input>:1:5: expected type 'int' but found 'string'\n"
        " | [1, 'a'].size() == 2\n | ....^")
    assert env.compile("[self, 1].size() == 2", "dyn") is not None  # dyn joins anything
