"""Structural schema processing: what a client sees when it writes an object."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kext.api.errors import Cause, invalid
from kext.api.schema import Schema, structural_problems

WIDGET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1.5},
                "color": {"type": "string", "enum": ["red", "green"], "default": "red"},
                "name": {"type": "string", "maxLength": 5, "minLength": 2, "pattern": "^[a-z]+$"},
                "port": {"x-kubernetes-int-or-string": True},
                "when": {"type": "string", "format": "date-time"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2,
                         "x-kubernetes-list-type": "set"},
                "ports": {
                    "type": "array", "minItems": 1,
                    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "protocol": {"type": "string", "default": "TCP"},
                    }},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "nested": {"type": "object", "properties": {
                    "inner": {"type": "object", "default": {},
                              "properties": {"level": {"type": "integer", "default": 3}}},
                }},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "maybe": {"type": "string", "nullable": True},
                "nope": {"type": "string"},
                "template": {
                    "type": "object", "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        },
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
    },
}


def obj(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"size": 1, **spec}}


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema(WIDGET)


def by_field(causes: list[Cause]) -> dict[str, Cause]:
    return {c.field: c for c in causes}


# -- validate


def test_valid_object_has_no_causes(schema: Schema) -> None:
    assert schema.validate(obj(color="green", port="http", tags=["a"])) == []


def test_type_mismatch_reads_like_kube(schema: Schema) -> None:
    [cause] = schema.validate(obj(size="three"))
    assert cause == Cause(
        "FieldValueTypeInvalid",
        'Invalid value: "string": spec.size in body must be of type integer: "string"',
        "spec.size",
    )


def test_missing_required_field(schema: Schema) -> None:
    o = obj()
    del o["spec"]["size"]
    assert schema.validate(o) == [Cause("FieldValueRequired", "Required value", "spec.size")]


def test_enum_lists_supported_values(schema: Schema) -> None:
    [cause] = schema.validate(obj(color="blue"))
    assert cause.reason == "FieldValueNotSupported"
    assert cause.message == 'Unsupported value: "blue": supported values: "red", "green"'


def test_numeric_bounds(schema: Schema) -> None:
    causes = by_field(schema.validate(obj(size=0, ratio=1.5)))
    assert causes["spec.size"].message == (
        "Invalid value: 0: spec.size in body should be greater than or equal to 1")
    assert causes["spec.ratio"].message == (
        "Invalid value: 1.5: spec.ratio in body should be less than 1.5")
    [too_big] = schema.validate(obj(size=11))
    assert too_big.message == (
        "Invalid value: 11: spec.size in body should be less than or equal to 10")


def test_integral_float_is_an_integer(schema: Schema) -> None:
    assert schema.validate(obj(size=2.0)) == []
    [cause] = schema.validate(obj(size=2.5))
    assert cause.message.endswith('must be of type integer: "number"')


def test_booleans_are_not_integers(schema: Schema) -> None:
    [cause] = schema.validate(obj(size=True))
    assert cause.message == (
        'Invalid value: "boolean": spec.size in body must be of type integer: "boolean"')


def test_string_rules_report_only_the_first_failure(schema: Schema) -> None:
    [long] = schema.validate(obj(name="abcdefg"))
    assert long == Cause("FieldValueTooLong", "Too long: may not be more than 5 bytes", "spec.name")
    [short] = schema.validate(obj(name="a"))
    assert short.message == 'Invalid value: "a": spec.name in body should be at least 2 chars long'
    [pattern] = schema.validate(obj(name="AB"))
    assert pattern.message == "Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"


def test_int_or_string(schema: Schema) -> None:
    assert schema.validate(obj(port=80)) == []
    assert schema.validate(obj(port="http")) == []
    [cause] = schema.validate(obj(port=True))
    assert cause.message == (
        'Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"')


def test_format(schema: Schema) -> None:
    assert schema.validate(obj(when="2024-01-02T03:04:05Z")) == []
    [cause] = schema.validate(obj(when="yesterday"))
    assert cause.reason == "FieldValueTypeInvalid"
    assert cause.message == (
        'Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"')


def test_array_rules_and_item_paths(schema: Schema) -> None:
    causes = schema.validate(obj(tags=["a", 1, "c"]))
    assert [c.field for c in causes] == ["spec.tags[1]", "spec.tags"]
    assert causes[1] == Cause("FieldValueTooMany", "Too many: 3: must have at most 2 items",
                              "spec.tags")
    [few] = schema.validate(obj(ports=[]))
    assert few.message == "Invalid value: 0: spec.ports in body should have at least 1 items"


def test_list_type_set_and_map_duplicates(schema: Schema) -> None:
    [dup] = schema.validate(obj(tags=["a", "a"]))
    assert dup == Cause("FieldValueDuplicate", 'Duplicate value: "a"', "spec.tags[1]")
    ports = [{"name": "http"}, {"name": "grpc"}, {"name": "http", "protocol": "UDP"}]
    [dup] = schema.validate(obj(ports=ports))
    assert dup == Cause("FieldValueDuplicate", 'Duplicate value: {"name":"http"}', "spec.ports[2]")


def test_additional_properties_values_are_validated(schema: Schema) -> None:
    [cause] = schema.validate(obj(labels={"a": "x", "b": 2}))
    assert cause.field == "spec.labels.b"


def test_null_for_non_nullable_field(schema: Schema) -> None:
    [cause] = schema.validate(obj(nope=None))
    assert cause.message == (
        'Invalid value: "null": spec.nope in body must be of type string: "null"')
    assert schema.validate(obj(maybe=None)) == []


def test_embedded_resource_needs_apiversion_and_kind(schema: Schema) -> None:
    causes = schema.validate(obj(template={"metadata": {"name": "Bad_Name/x"}}))
    fields = [c.field for c in causes]
    assert "spec.template.apiVersion" in fields and "spec.template.kind" in fields
    assert "spec.template.metadata.name" in fields


def test_every_violation_is_reported_and_invalid_lists_them(schema: Schema) -> None:
    causes = schema.validate(obj(size="x", color="blue"))
    err = invalid("example.com", "Widget", "w", causes)
    assert err.code == 422 and err.reason == "Invalid"
    assert err.message.startswith('Widget.example.com "w" is invalid: [spec.size: Invalid value')
    assert err.status()["details"]["causes"][1] == {
        "reason": "FieldValueNotSupported", "field": "spec.color",
        "message": 'Unsupported value: "blue": supported values: "red", "green"',
    }


def test_composition_messages() -> None:
    s = Schema({"type": "object", "properties": {"spec": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
    }}})
    causes = s.validate({"spec": {"a": "x", "b": "y"}})
    assert causes == [Cause(
        "FieldValueInvalid",
        'Invalid value: "": "spec" must validate one and only one schema (oneOf). '
        "Found 2 valid alternatives",
        "<nil>",
    )]
    assert s.validate({"spec": {"a": "x"}}) == []


# -- prune


def test_prune_drops_unknown_fields_and_reports_them(schema: Schema) -> None:
    o = obj(bogus=1, ports=[{"name": "a", "weird": True}], free={"any": {"thing": 1}})
    o["extra"] = {"x": 1}
    o["metadata"]["surprise"] = 1
    assert schema.prune(o) == [
        "extra", "metadata.surprise", "spec.bogus", "spec.ports[0].weird",
    ]
    assert "bogus" not in o["spec"] and "extra" not in o
    assert o["spec"]["free"] == {"any": {"thing": 1}}
    assert o["apiVersion"] == "example.com/v1" and o["kind"] == "Widget"


def test_prune_keeps_standard_metadata(schema: Schema) -> None:
    o = obj()
    o["metadata"] = {"name": "w", "labels": {"a": "b"}, "annotations": {"x": "y"},
                     "finalizers": ["f"], "ownerReferences": [{"name": "o", "what": 1}]}
    assert schema.prune(o) == ["metadata.ownerReferences[0].what"]
    assert o["metadata"]["labels"] == {"a": "b"}


def test_prune_inside_embedded_resource_keeps_type_and_metadata(schema: Schema) -> None:
    o = obj(template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "x": 1},
                      "spec": {"anything": True}})
    assert schema.prune(o) == ["spec.template.metadata.x"]
    assert o["spec"]["template"]["spec"] == {"anything": True}


# -- default


def test_defaults_fill_absent_fields(schema: Schema) -> None:
    o = obj(ports=[{"name": "http"}], nested={})
    schema.default(o)
    assert o["spec"]["color"] == "red"
    assert o["spec"]["ports"] == [{"name": "http", "protocol": "TCP"}]
    # a defaulted object gets its own nested defaults
    assert o["spec"]["nested"] == {"inner": {"level": 3}}


def test_defaults_do_not_override_and_are_not_shared(schema: Schema) -> None:
    a, b = obj(nested={}), obj(nested={}, color="green")
    schema.default(a)
    schema.default(b)
    assert b["spec"]["color"] == "green"
    a["spec"]["nested"]["inner"]["level"] = 9
    assert b["spec"]["nested"]["inner"]["level"] == 3


def test_nulls_are_dropped_or_defaulted(schema: Schema) -> None:
    o = obj(color=None, nope=None, maybe=None)
    schema.default(o)
    assert o["spec"]["color"] == "red"
    assert "nope" not in o["spec"]
    assert o["spec"]["maybe"] is None


def test_schema_is_reusable_and_does_not_touch_valid_objects(schema: Schema) -> None:
    o = obj(color="green", ports=[{"name": "a", "protocol": "UDP"}])
    before = copy.deepcopy(o)
    assert schema.prune(o) == []
    schema.default(o)
    assert o == before


# -- structural schema rules (CRD acceptance)


def test_structural_problems_of_a_good_schema() -> None:
    assert structural_problems(WIDGET, "s") == []


def test_structural_problems_name_the_bad_node() -> None:
    bad = {
        "type": "object",
        "properties": {
            "spec": {"properties": {"x": {"type": "string"}}},
            "items": {"type": "array"},
            "when": {"type": "strin"},
            "m": {"type": "object", "properties": {"a": {"type": "string"}},
                  "additionalProperties": {"type": "string"}},
            "r": {"$ref": "#/definitions/x", "type": "string"},
            "p": {"type": "string", "pattern": "("},
            "d": {"type": "integer", "default": "one"},
        },
    }
    problems = {(c.field, c.message) for c in structural_problems(bad, "schema")}
    assert ("schema.properties[spec].type",
            "Required value: must not be empty for specified object fields") in problems
    assert ("schema.properties[items].items", "Required value: must be specified") in problems
    assert any(f == "schema.properties[when].type" and m.startswith("Unsupported value")
               for f, m in problems)
    assert ("schema.properties[m].additionalProperties",
            "Forbidden: additionalProperties and properties are mutual exclusive") in problems
    assert ("schema.properties[r].$ref", "Forbidden: $ref is not supported") in problems
    assert any(f == "schema.properties[p].pattern" for f, _ in problems)
    assert any(f == "schema.properties[d].default" and "must be of type integer" in m
               for f, m in problems)


def test_structural_root_rules() -> None:
    problems = structural_problems({"type": "string"}, "s")
    assert [(c.field, c.message) for c in problems] == [
        ("s.type", 'Invalid value: "string": must be object at the root')]
    assert [c.message for c in structural_problems(None, "s")] == [
        "Required value: schemas are required"]
    meta = {"type": "object", "properties": {"metadata": {
        "type": "object", "properties": {"labels": {"type": "object"}}}}}
    assert [c.field for c in structural_problems(meta, "s")] == ["s.properties[metadata]"]


def test_value_validations_must_not_carry_types() -> None:
    s = {"type": "object", "properties": {"v": {
        "type": "string", "anyOf": [{"type": "string", "pattern": "^a"}]}}}
    [problem] = structural_problems(s, "s")
    assert problem.field == "s.properties[v].anyOf[0].type"
    ok = {"type": "object", "properties": {"v": {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}]}}}
    assert structural_problems(ok, "s") == []


def test_cel_rules_are_counted() -> None:
    s = Schema({"type": "object", "x-kubernetes-validations": [{"rule": "self.a > 0"}],
                "properties": {"a": {"type": "integer"}}})
    assert s.cel_rules == 1


def test_compiled_nodes_carry_the_merge_extensions() -> None:
    # What server-side apply reads off the compiled schema instead of the raw one.
    root = Schema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                     "additionalProperties": {"type": "string"}},
        "labels": {"type": "object", "x-kubernetes-map-type": "granular",
                   "additionalProperties": {"type": "string"}},
        "ports": WIDGET["properties"]["spec"]["properties"]["ports"],
        "args": {"type": "array", "x-kubernetes-list-type": "atomic",
                 "items": {"type": "string"}},
    }}}}).root
    assert root.properties is not None
    spec = root.properties["spec"].properties
    assert spec is not None
    assert (spec["selector"].map_type, spec["labels"].map_type) == ("atomic", "")
    ports = spec["ports"]
    assert (ports.list_type, ports.list_map_keys) == ("map", ("name",))
    assert ports.items is not None and ports.items.properties is not None
    assert ports.items.properties["protocol"].has_default
    assert ports.items.properties["protocol"].default == "TCP"
    assert not ports.items.properties["name"].has_default
    assert spec["args"].list_type == ""
