"""Label and field selectors as `kubectl get -l ... --field-selector ...` uses them."""

from __future__ import annotations

import pytest

from kext.api.errors import StatusError
from kext.api.resource import Version
from kext.api.selectors import (
    escape_field_value,
    field_set,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "frontend", "env": "prod", "replicas": "3"}


@pytest.mark.parametrize(("selector", "selected"), [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app!=db", True),
    ("missing!=x", True),
    ("app in (web,db)", True),
    ("app in (db)", False),
    ("app notin (db)", True),
    ("missing notin (db)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=frontend", True),
    ("app=web, tier=backend", False),
    ("  app = web  ", True),
    ("replicas>2", True),
    ("replicas<3", False),
    ("missing=", False),
    ("app in (web,,db)", True),
])
def test_label_selector_matching(selector: str, selected: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is selected


def test_label_selector_on_objects_without_labels() -> None:
    assert parse_label_selector("!app").matches(None)
    assert not parse_label_selector("app").matches(None)


@pytest.mark.parametrize(("selector", "message"), [
    ("app=web=x", "found '=', expected: ',' or 'end of string'"),
    ("app in web", "unable to parse requirement: found 'web' expected: '('"),
    ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
    (",app", "found ',', expected: !, identifier, or 'end of string'"),
    ("app,", "found '', expected: identifier after ','"),
    ("app=(x)", "unable to parse requirement: found '(', expected: identifier"),
    ("app>x", "unable to parse requirement: values[0]: Invalid value: \"x\": "
              "for 'Gt', 'Lt' operators, the value must be an integer"),
])
def test_label_selector_errors_are_400_with_kube_messages(selector: str, message: str) -> None:
    with pytest.raises(StatusError) as exc:
        parse_label_selector(selector)
    assert exc.value.code == 400
    assert exc.value.reason == "BadRequest"
    assert exc.value.message == message


def test_label_selector_key_and_value_validation() -> None:
    with pytest.raises(StatusError) as exc:
        parse_label_selector("bad key!=x")
    assert exc.value.message == (
        "unable to parse requirement: found 'key', expected: in, notin, =, ==, !=, gt, lt")
    with pytest.raises(StatusError) as exc:
        parse_label_selector("a_/b=x")
    assert exc.value.message.startswith(
        'unable to parse requirement: <nil>: Invalid value: "a_/b": prefix part ')
    with pytest.raises(StatusError) as exc:
        parse_label_selector("app=-x")
    assert exc.value.message.startswith(
        'unable to parse requirement: values[0][app]: Invalid value: "-x": a valid label must')


def test_label_selector_string_form_is_normalised() -> None:
    assert str(parse_label_selector("tier in (b,a), !x, app")) == "app,tier in (a,b),!x"


@pytest.mark.parametrize(("selector", "selected"), [
    ("metadata.name=w1", True),
    ("metadata.name==w1", True),
    ("metadata.name!=w1", False),
    ("metadata.name=w1,spec.color=red", True),
    ("spec.color=blue", False),
    ("spec.shape=", True),          # an absent field equals ""
    ("spec.label=a\\,b\\=c", True),
])
def test_field_selector_matching(selector: str, selected: bool) -> None:
    fields = {"metadata.name": "w1", "spec.color": "red", "spec.label": "a,b=c"}
    assert parse_field_selector(selector).matches(fields) is selected


@pytest.mark.parametrize(("selector", "message"), [
    ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ("a=b=c", "invalid field selector: unescaped character in value: 61"),
    ("a=b\\x", "invalid field selector: invalid escape sequence: \\x"),
])
def test_field_selector_errors(selector: str, message: str) -> None:
    with pytest.raises(StatusError) as exc:
        parse_field_selector(selector)
    assert (exc.value.code, exc.value.message) == (400, message)


def test_escape_round_trip() -> None:
    value = "a,b=c\\d"
    selector = parse_field_selector("spec.x=" + escape_field_value(value))
    assert selector.requires_exact_match("spec.x") == value


VERSION = Version(
    name="v1", served=True, storage=True,
    schema={"type": "object"},
    selectable_fields=(".spec.color", ".spec.size", ".spec.ready", ".spec.deep.value"),
)


def test_field_set_of_a_namespaced_object() -> None:
    obj = {"metadata": {"name": "w1", "namespace": "ns"},
           "spec": {"color": "red", "size": 3, "ready": False, "deep": {"value": None}}}
    assert field_set(obj, VERSION, namespaced=True) == {
        "metadata.name": "w1", "metadata.namespace": "ns",
        "spec.color": "red", "spec.size": "3", "spec.ready": "false",
    }
    assert "metadata.namespace" not in field_set(obj, VERSION, namespaced=False)


def test_unsupported_field_label_is_400() -> None:
    parse_field_selector("spec.color=red,metadata.namespace=a").check_supported(VERSION, True)
    with pytest.raises(StatusError) as exc:
        parse_field_selector("spec.other=x").check_supported(VERSION, True)
    assert (exc.value.code, exc.value.message) == (400, "field label not supported: spec.other")
    with pytest.raises(StatusError):
        parse_field_selector("metadata.namespace=a").check_supported(VERSION, False)


def test_parsed_selectors_are_shared() -> None:
    assert parse_label_selector("app=web") is parse_label_selector("app=web")
    assert parse_field_selector("a=b") is parse_field_selector("a=b")
