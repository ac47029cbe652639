"""x-kubernetes-validations on a schema: kube's errors, transition rules, ratcheting, cost
limits, and the CRD errors `kext check` prints for rules kube-apiserver would refuse."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kext.api.errors import Cause
from kext.api.resource import parse_crd
from kext.api.schema import Schema

SPEC: dict[str, Any] = {
    "type": "object",
    "x-kubernetes-validations": [
        {"rule": "self.minReplicas <= self.replicas", "message": "replicas below minReplicas"},
        {"rule": "self.replicas <= self.maxReplicas",
         "messageExpression": "'replicas above ' + string(self.maxReplicas)",
         "fieldPath": ".replicas"},
        {"rule": "!has(self.memory) || quantity(self.memory).isLessThan(quantity('4Gi'))",
         "reason": "FieldValueForbidden", "message": "at most 4Gi"},
    ],
    "properties": {
        "minReplicas": {"type": "integer"}, "replicas": {"type": "integer"},
        "maxReplicas": {"type": "integer"}, "memory": {"type": "string"},
        "name": {"type": "string", "maxLength": 20,
                 "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')"}]},
        "class": {"type": "string",
                  "x-kubernetes-validations": [{"rule": "self == oldSelf",
                                                "message": "class is immutable"}]},
        "level": {"type": "string", "x-kubernetes-validations": [{
            "rule": "!oldSelf.hasValue() || oldSelf.value() != 'high' || self != 'low'",
            "optionalOldSelf": True, "message": "cannot go from high to low"}]},
        "labels": {"type": "object", "additionalProperties": {
            "type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 4"}]}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["name"], "items": {
                      "type": "object", "required": ["name"], "properties": {
                          "name": {"type": "string"}, "port": {"type": "integer",
                                                             "x-kubernetes-validations": [
                                                                 {"rule": "self >= oldSelf"}]}}}},
    },
}
ROOT = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
    "spec": SPEC}}


def widget(**spec: Any) -> dict[str, Any]:
    base = {"minReplicas": 1, "replicas": 2, "maxReplicas": 3}
    base.update(spec)
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default"}, "spec": base}


@pytest.fixture(scope="module")
def schema() -> Schema:
    s = Schema(ROOT)
    assert s.rule_problems("s") == []
    return s


def test_a_good_object_passes(schema: Schema) -> None:
    assert schema.validate(widget(memory="1Gi", name="abc", labels={"a": "xy"})) == []


def test_failed_rules_report_message_path_and_reason(schema: Schema) -> None:
    causes = schema.validate(widget(minReplicas=5, replicas=4, memory="8Gi"))
    assert causes == [
        Cause("FieldValueInvalid", "Invalid value: replicas below minReplicas", "spec"),
        Cause("FieldValueInvalid", "Invalid value: replicas above 3", "spec.replicas"),
        Cause("FieldValueForbidden", "Forbidden: at most 4Gi", "spec"),
    ]


def test_scalar_rules_show_the_value_and_the_default_message(schema: Schema) -> None:
    [cause] = schema.validate(widget(name="Abc"))
    assert cause == Cause("FieldValueInvalid",
                          "Invalid value: \"Abc\": failed rule: self.matches('^[a-z]+$')",
                          "spec.name")


def test_rules_on_map_values_name_the_key(schema: Schema) -> None:
    [cause] = schema.validate(widget(labels={"ok": "a", "bad": "abcdef"}))
    assert cause.field == "spec.labels[bad]"


def test_transition_rules_run_only_on_update_with_an_old_value(schema: Schema) -> None:
    assert schema.validate(widget(**{"class": "gold"})) == []
    old = widget(**{"class": "gold"})
    [cause] = schema.validate(widget(**{"class": "silver"}), old)
    assert cause == Cause("FieldValueInvalid", 'Invalid value: "silver": class is immutable',
                          "spec.class")
    # Setting the field where the old object had none is no transition.
    assert schema.validate(widget(**{"class": "silver"}), widget()) == []


def test_optional_old_self_runs_on_create_too(schema: Schema) -> None:
    assert schema.validate(widget(level="low")) == []
    [cause] = schema.validate(widget(level="low"), widget(level="high"))
    assert cause.message == 'Invalid value: "low": cannot go from high to low'


def test_list_map_items_correlate_by_key(schema: Schema) -> None:
    old = widget(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 90}])
    new = widget(ports=[{"name": "b", "port": 91}, {"name": "a", "port": 79}])
    [cause] = schema.validate(new, old)
    assert cause.field == "spec.ports[1].port"


def test_runtime_errors_are_worded_as_kube(schema: Schema) -> None:
    s = Schema({"type": "object", "properties": {"spec": {
        "type": "object", "properties": {"a": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "self.a > 0"}]}}})
    [cause] = s.validate({"spec": {}})
    assert cause == Cause("FieldValueInvalid",
                          'Invalid value: "object": no such key: a evaluating rule: self.a > 0',
                          "spec")


def test_root_rules_report_the_nil_path() -> None:
    s = Schema({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('w')", "message": "names start with w"}],
        "properties": {"spec": {"type": "object"}}})
    assert s.validate(widget()) == []
    bad = widget()
    bad["metadata"]["name"] = "x"
    assert s.validate(bad) == [Cause("FieldValueInvalid", "Invalid value: names start with w",
                                     "<nil>")]


def test_ratcheting_forgives_an_unchanged_broken_value(schema: Schema) -> None:
    stored = widget(name="Old")  # stored before the rules tightened
    update = copy.deepcopy(stored)
    update["spec"]["replicas"] = 3
    assert schema.validate(update, stored) == []
    update["spec"]["name"] = "Older"  # changed: checked again
    [cause] = schema.validate(update, stored)
    assert cause.field == "spec.name"


def test_ratcheting_covers_schema_errors() -> None:
    s = Schema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "size": {"type": "integer", "maximum": 5}, "color": {"type": "string"}}}}})
    stored = {"spec": {"size": 9, "color": "red"}}
    assert len(s.validate(stored)) == 1
    assert s.validate({"spec": {"size": 9, "color": "blue"}}, stored) == []
    assert len(s.validate({"spec": {"size": 10, "color": "red"}}, stored)) == 1


def test_the_runtime_budget_stops_validation() -> None:
    # Each rule fits the per-rule estimate (1000 items of 40,000 characters: ~4M); three of
    # them on the largest allowed object need more than the request's budget of 10M.
    s = Schema({"type": "object", "properties": {"items": {
        "type": "array", "maxItems": 1000,
        "items": {"type": "string", "maxLength": 40000, "x-kubernetes-validations": [
            {"rule": "!self.contains('x')"}, {"rule": "!self.contains('y')"},
            {"rule": "!self.contains('z')"}]}}}})
    assert s.rule_problems("s") == []
    big = {"items": ["a" * 40000] * 1000}
    causes = s.validate(big)
    assert causes[-1].message == (
        'Invalid value: "string": validation failed due to running out of cost budget, no '
        "further validation rules will be run")
    assert s.validate({"items": ["a" * 10] * 1000}) == []


# -- CRD errors


def crd(spec_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}}}]},
    }


AT = "resources[0].spec.versions[0].schema.openAPIV3Schema.properties[spec]"


def problems(spec_schema: dict[str, Any]) -> list[str]:
    definition, found = parse_crd(crd(spec_schema), "resources[0]")
    assert (definition is None) == bool(found)
    return found


def test_a_crd_with_good_rules_loads_with_them_compiled() -> None:
    definition, found = parse_crd(crd(SPEC), "resources[0]")
    assert found == [] and definition is not None
    compiled = definition.versions[0].compiled
    assert compiled is not None and compiled.cel_rules == 8


def test_a_rule_that_does_not_compile_is_a_crd_error() -> None:
    [line] = problems({"type": "object", "properties": {"n": {"type": "integer"}},
                       "x-kubernetes-validations": [{"rule": "self.n == true"}]})
    assert line.startswith(
        f"{AT}.x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule"
        '{Rule:"self.n == true", Message:"", MessageExpression:"", ')
    assert ("compilation failed: ERROR: <input>:1:8: found no matching overload for '_==_' "
            "applied to '(int, bool)'") in line


def test_an_undeclared_field_is_a_crd_error() -> None:
    [line] = problems({"type": "object", "properties": {"n": {"type": "integer"}},
                       "x-kubernetes-validations": [{"rule": "self.nonExistingField > 0"}]})
    assert "undefined field 'nonExistingField'" in line


def test_rules_must_return_bool_and_messages_strings() -> None:
    [line] = problems({"type": "object", "x-kubernetes-validations": [{"rule": "1"}]})
    assert line.endswith("cel expression must evaluate to a bool")
    [line] = problems({"type": "object", "x-kubernetes-validations": [
        {"rule": "true", "messageExpression": "1"}]})
    assert line.startswith(f"{AT}.x-kubernetes-validations[0].messageExpression: ")
    assert line.endswith("messageExpression must evaluate to a string")


def test_the_shape_of_a_rule_is_checked() -> None:
    lines = problems({"type": "object", "x-kubernetes-validations": [
        {"rule": ""}, {"rule": "true", "reason": "Nope"}, {"rule": "true", "message": "a\nb"}]})
    assert lines == [
        f"{AT}.x-kubernetes-validations[0].rule: Required value: rule is not specified",
        f'{AT}.x-kubernetes-validations[1].reason: Unsupported value: "Nope": supported values: '
        '"FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", '
        '"FieldValueRequired"',
        f'{AT}.x-kubernetes-validations[2].message: Invalid value: "a\\nb": must not contain '
        "line breaks",
    ]


def test_transition_rules_need_a_correlatable_place() -> None:
    [line] = problems({"type": "object", "properties": {"tags": {
        "type": "array", "maxItems": 10, "items": {
            "type": "string", "maxLength": 10,
            "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}})
    assert line == (f'{AT}.properties[tags].items.x-kubernetes-validations[0].rule: Invalid '
                    'value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable '
                    f"portion of the schema within {AT.removeprefix('resources[0].')}"
                    ".properties[tags].items")


def test_optional_old_self_without_old_self_is_refused() -> None:
    [line] = problems({"type": "object", "x-kubernetes-validations": [
        {"rule": "true", "optionalOldSelf": True}]})
    assert line == (f"{AT}.x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: "
                    "may not be set if oldSelf is not used in rule")


def test_an_unbounded_rule_costs_too_much() -> None:
    unbounded = {"type": "object", "properties": {"foo": {
        "type": "array", "items": {"type": "string"},
        "x-kubernetes-validations": [{"rule": "self.all(x, x.contains('a string'))"}]}}}
    line, *total = problems(unbounded)
    assert total[-1].startswith(f"{AT[:-len('.properties[spec]')]}: Forbidden: "
                                "x-kubernetes-validations estimated rule cost total")
    assert line == (
        f"{AT}.properties[foo].x-kubernetes-validations[0].rule: Forbidden: estimated rule "
        "cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding "
        "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")
    bounded = copy.deepcopy(unbounded)
    bounded["properties"]["foo"].update(maxItems=25)
    bounded["properties"]["foo"]["items"].update(maxLength=10)
    assert problems(bounded) == []


def test_a_field_path_must_name_a_field() -> None:
    [line] = problems({"type": "object", "properties": {"a": {"type": "integer"}},
                       "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".b"}]})
    assert line == (f'{AT}.x-kubernetes-validations[0].fieldPath: Invalid value: ".b": must be '
                    "a valid path")
