"""Object metadata rules, with kube-apiserver's messages and field paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from kext.api import meta
from kext.api.errors import Cause, StatusError


def widget(**metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "namespace": "default", **metadata}}


def fields(causes: list[Cause]) -> list[str]:
    return [c.field for c in causes]


def test_valid_metadata() -> None:
    obj = widget(labels={"app": "web", "example.com/tier": ""},
                 annotations={"Example.com/Note": "anything at all"}, finalizers=["example.com/f"])
    assert meta.validate_object_meta_create(obj, namespaced=True) == []


def test_name_must_be_a_dns_subdomain() -> None:
    [cause] = meta.validate_object_meta_create(widget(name="Bad_Name"), namespaced=True)
    assert cause.field == "metadata.name"
    assert cause.reason == "FieldValueInvalid"
    assert cause.message == (
        'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )


def test_name_or_generate_name_required() -> None:
    obj = widget()
    del obj["metadata"]["name"]
    assert meta.validate_object_meta_create(obj, True) == [
        Cause("FieldValueRequired", "Required value: name or generateName is required",
              "metadata.name")]


def test_namespace_by_scope() -> None:
    cluster = widget()
    assert meta.validate_object_meta_create(cluster, namespaced=False) == [
        Cause("FieldValueForbidden", "Forbidden: not allowed on this type", "metadata.namespace")]
    namespaced = widget()
    del namespaced["metadata"]["namespace"]
    assert fields(meta.validate_object_meta_create(namespaced, True)) == ["metadata.namespace"]


def test_label_problems_use_the_labels_path() -> None:
    causes = meta.validate_object_meta_create(
        widget(labels={"bad key!": "ok", "good": "-bad value"}), True)
    assert fields(causes) == ["metadata.labels", "metadata.labels"]
    assert causes[0].message.startswith('Invalid value: "bad key!": name part must consist of')
    assert "'MyName',  or 'my.name',  or '123-abc'" in causes[0].message
    assert causes[1].message.startswith(
        'Invalid value: "-bad value": a valid label must be an empty string')


def test_label_value_length() -> None:
    [cause] = meta.validate_object_meta_create(widget(labels={"a": "x" * 64}), True)
    assert cause.message == f'Invalid value: "{"x" * 64}": must be no more than 63 characters'


def test_annotations_total_size() -> None:
    [cause] = meta.validate_object_meta_create(
        widget(annotations={"big": "x" * (256 * 1024)}), True)
    assert cause == Cause("FieldValueTooLong", "Too long: may not be more than 262144 bytes",
                          "metadata.annotations")


def test_mistyped_metadata_is_a_cause_not_a_crash() -> None:
    causes = meta.validate_object_meta_create(widget(labels=["a"], generation="1"), True)
    assert fields(causes) == ["metadata.generation", "metadata.labels"]


def test_generate_name_prefix() -> None:
    obj = widget(generateName="web-")
    del obj["metadata"]["name"]
    name = meta.generate_name("web-")
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", name)
    assert len(meta.generate_name("x" * 80)) == 63
    obj["metadata"]["name"] = name
    assert meta.validate_object_meta_create(obj, True) == []
    obj["metadata"]["generateName"] = "Web-"
    assert fields(meta.validate_object_meta_create(obj, True)) == ["metadata.generateName"]


def test_update_rejects_changes_to_immutable_fields() -> None:
    old = widget(uid="u1", creationTimestamp="2024-01-01T00:00:00Z", resourceVersion="5")
    new = widget(uid="u2", creationTimestamp="2024-01-01T00:00:00Z", resourceVersion="5")
    new["metadata"]["name"] = "other"
    causes = meta.validate_object_meta_update(new, old)
    assert fields(causes) == ["metadata.name", "metadata.uid"]
    assert causes[0].message == 'Invalid value: "other": field is immutable'


def test_update_requires_resource_version_and_no_generation_decrease() -> None:
    old = widget(generation=3, resourceVersion="5")
    new = widget(generation=2)
    causes = meta.validate_object_meta_update(new, old)
    assert [(c.field, c.message) for c in causes] == [
        ("metadata.resourceVersion", "Invalid value: 0: must be specified for an update"),
        ("metadata.generation", "Invalid value: 2: must not be decremented"),
    ]


def test_no_new_finalizers_while_deleting() -> None:
    old = widget(resourceVersion="5", deletionTimestamp="2024-01-01T00:00:00Z",
                 finalizers=["a.io/x"])
    new = widget(resourceVersion="5", deletionTimestamp="2024-01-01T00:00:00Z",
                 finalizers=["a.io/x", "a.io/y"])
    [cause] = meta.validate_object_meta_update(new, old)
    assert cause.field == "metadata.finalizers"
    assert cause.reason == "FieldValueForbidden"
    assert 'found new finalizers []string{"a.io/y"}' in cause.message


def test_system_fields() -> None:
    assert re.fullmatch(r"[0-9a-f-]{36}", meta.new_uid())
    stamp = meta.now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    parsed = meta.parse_time(stamp)
    assert parsed is not None and abs((datetime.now(UTC) - parsed).total_seconds()) < 5
    assert meta.parse_time("yesterday") is None


def test_ensure_namespace() -> None:
    md: dict[str, Any] = {}
    meta.ensure_namespace(md, "team-a", namespaced=True)
    assert md == {"namespace": "team-a"}
    md = {"namespace": "x"}
    meta.ensure_namespace(md, "", namespaced=False)
    assert md == {}
    with pytest.raises(StatusError) as exc:
        meta.ensure_namespace({"namespace": "b"}, "a", namespaced=True)
    assert exc.value.code == 400
    assert exc.value.message == (
        "the namespace of the provided object does not match the namespace sent on the request")


def test_prune_object_meta() -> None:
    md = {"name": "a", "bogus": 1, "labels": {}, "namespace": "", "finalizers": ["x"]}
    unknown: list[str] = []
    meta.prune_object_meta(md, "metadata", unknown)
    assert unknown == ["metadata.bogus"]
    assert md == {"name": "a", "finalizers": ["x"]}


def test_name_helpers() -> None:
    assert meta.is_dns1123_label("a.b") == ["must not contain dots"]
    assert meta.is_dns1035_label("1abc")[0].startswith("a DNS-1035 label")
    assert meta.is_qualified_name("example.com/Name") == []
    assert meta.is_qualified_name("/x") == ["prefix part must be non-empty"]
