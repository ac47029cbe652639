"""Field paths and the fieldsV1 encoding (kext.registry.fieldmanager.fieldpath): kube's bytes."""

from __future__ import annotations

import json

import pytest

from kext.registry.fieldmanager import fields_to_set, path_string, set_to_fields


def test_fields_round_trip_uses_kube_encoding() -> None:
    fields = {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            ".": {},
            "f:ports": {
                "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                    ".": {}, "f:containerPort": {}, "f:protocol": {},
                },
            },
            "f:tags": {"v:\"a\"": {}, "v:\"b\"": {}},
        },
    }
    paths = fields_to_set(fields)
    assert ("f:spec",) in paths
    assert ("f:metadata",) not in paths
    assert ("f:metadata", "f:labels") in paths
    assert ("f:spec", "f:tags", 'v:"a"') in paths
    assert json.dumps(set_to_fields(paths)) == json.dumps(fields)


def test_fields_keys_are_canonical_and_ordered() -> None:
    # Key order inside k:{} and spacing do not matter; output is SMD-sorted: fields, keys,
    # values, then indexes, `.` first.
    paths = fields_to_set({
        "i:1": {}, "v:2": {}, "k:{ \"protocol\":\"TCP\", \"containerPort\":80 }": {},
        "f:b": {"f:x": {}, ".": {}}, "f:a": {}, "x:future": {},
    })
    out = set_to_fields(paths)
    assert list(out) == ["f:a", "f:b", 'k:{"containerPort":80,"protocol":"TCP"}', "v:2", "i:1"]
    assert list(out["f:b"]) == [".", "f:x"]


@pytest.mark.parametrize("bad", [
    "not an object", {"f:spec": 3}, {"k:{not json}": {}}, {"k:[1]": {}}, {"x": {}},
])
def test_malformed_fields_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError):
        fields_to_set(bad)


def test_path_string_matches_kube() -> None:
    path = ("f:spec", 'k:{"containerPort":80,"protocol":"TCP"}', "f:name")
    assert path_string(path) == '.spec[containerPort=80,protocol="TCP"].name'
    assert path_string(("f:spec", "f:tags", 'v:"a"')) == '.spec.tags[="a"]'
    assert path_string(("f:spec", "f:x", "i:2")) == ".spec.x[2]"
