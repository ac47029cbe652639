"""Field-error causes and the 422 Invalid Status, rendered as kube-apiserver renders them."""

from __future__ import annotations

import pytest

from kext.api.errors import (
    field_duplicate,
    field_forbidden,
    field_invalid,
    field_not_supported,
    field_required,
    field_too_long,
    field_too_many,
    field_type_invalid,
    go_float,
    go_json,
    go_string_slice,
    go_value,
    invalid,
)


@pytest.mark.parametrize(("value", "shown"), [
    ("a\"b", '"a\\"b"'), (3, "3"), (True, "true"), (None, "null"), (1.5, "1.5"),
    (2.0, "2"), (1e6, "1e+06"), (123456.0, "123456"), (1e-5, "1e-05"),
    ({"b": 1.0, "a": [None, "x"]}, '{"a":[null,"x"],"b":1}'),
])
def test_bad_values_print_like_go(value: object, shown: str) -> None:
    assert go_value(value) == shown


def test_go_float_negative_and_zero() -> None:
    assert (go_float(-0.25), go_float(0.0), go_float(-1234567.0)) == ("-0.25", "0", "-1.234567e+06")


@pytest.mark.parametrize(("value", "marshalled"), [
    (2.5e-05, "0.000025"), (1e-7, "1e-7"), (-1.5e-300, "-1.5e-300"), (1e21, "1e+21"),
    (123456789.0, "123456789"), (0.1, "0.1"), (-0.0, "-0"),
    ("<a&b>", '"\\u003ca\\u0026b\\u003e"'), ("line\u2028sep", '"line\\u2028sep"'),
    ("tab\t", '"tab\\t"'),
])
def test_json_values_marshal_like_encoding_json(value: object, marshalled: str) -> None:
    assert go_json(value) == marshalled


def test_a_cell_prints_strings_bare_and_the_rest_as_an_error_does() -> None:
    assert go_value("a b", quote_strings=False) == "a b"
    for value in (True, 7, 1e6, ["x", 1.0], {"k": None}):
        assert go_value(value, quote_strings=False) == go_value(value)


def test_string_slices_print_like_go_sharp_v() -> None:
    assert go_string_slice(["a", 'b"c']) == '[]string{"a", "b\\"c"}'
    assert go_string_slice([]) == "[]string{}"


def test_field_error_bodies() -> None:
    assert field_required("spec.a").message == "Required value"
    assert field_required("metadata.name", "name or generateName is required").message == (
        "Required value: name or generateName is required")
    assert field_invalid("x", 0, "must be positive").message == "Invalid value: 0: must be positive"
    assert field_type_invalid("x", "string", "d").reason == "FieldValueTypeInvalid"
    assert field_not_supported("x", "c", ["a", "b"]).message == (
        'Unsupported value: "c": supported values: "a", "b"')
    assert field_duplicate("x[1]", "a").message == 'Duplicate value: "a"'
    assert field_forbidden("x", "not allowed on this type").message == (
        "Forbidden: not allowed on this type")
    assert field_too_long("x", 1).message == "Too long: may not be more than 1 byte"
    assert field_too_many("x", 3, 2).message == "Too many: 3: must have at most 2 items"


def test_invalid_with_one_and_several_causes() -> None:
    one = invalid("example.com", "Widget", "w", [field_required("spec.a")])
    assert one.message == 'Widget.example.com "w" is invalid: spec.a: Required value'
    two = invalid("example.com", "Widget", "w",
                  [field_required("spec.a"), field_required("spec.b"), field_required("spec.a")])
    assert two.message == (
        'Widget.example.com "w" is invalid: [spec.a: Required value, spec.b: Required value]')
    assert len(two.status()["details"]["causes"]) == 3
    assert invalid("", "Widget", "w", []).message == 'Widget "w" is invalid'
