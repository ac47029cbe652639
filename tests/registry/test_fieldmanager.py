"""Server-side apply and managedFields (kext.registry.fieldmanager.FieldManager), in memory: the
wire shapes are kube-apiserver's for a custom resource."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kext.api.errors import StatusError
from kext.api.resource import ResourceDefinition, Version
from kext.api.schema import Schema
from kext.registry.fieldmanager import LAST_APPLIED_ANNOTATION, FieldManager

API_VERSION = "example.kext.io/v1alpha1"
T1 = "2024-01-01T00:00:00Z"
T2 = "2024-01-02T00:00:00Z"
T3 = "2024-01-03T00:00:00Z"
T4 = "2024-01-04T00:00:00Z"

PORT = {"type": "object", "required": ["containerPort"], "properties": {
    "containerPort": {"type": "integer"},
    "protocol": {"type": "string", "default": "TCP"},
    "name": {"type": "string"},
}}
CONTAINER = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string"},
    "image": {"type": "string"},
    "args": {"type": "array", "items": {"type": "string"}},
    "ports": {"type": "array", "x-kubernetes-list-type": "map",
              "x-kubernetes-list-map-keys": ["containerPort", "protocol"], "items": PORT},
}}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "spec": {"type": "object", "properties": {
        "size": {"type": "integer"},
        "color": {"type": "string"},
        "replicas": {"type": "integer"},
        "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                     "additionalProperties": {"type": "string"}},
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "hosts": {"type": "array", "x-kubernetes-list-type": "atomic",
                  "items": {"type": "string"}},
        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "template": {"type": "object", "properties": {
            "metadata": {"type": "object", "properties": {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            }},
            "spec": {"type": "object", "properties": {
                "containers": {"type": "array", "x-kubernetes-list-type": "map",
                               "x-kubernetes-list-map-keys": ["name"], "items": CONTAINER},
            }},
        }},
    }},
    "data": {"type": "object", "additionalProperties": {"type": "string"}},
    "status": {"type": "object", "properties": {
        "phase": {"type": "string"},
        "ready": {"type": "integer"},
    }},
}}


@pytest.fixture
def fm() -> FieldManager:
    return FieldManager(API_VERSION, "Widget", Schema(SCHEMA), status_subresource=True)


def widget(spec: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION, "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default", **metadata},
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the store would persist: a JSON round trip and a uid."""
    out: dict[str, Any] = json.loads(json.dumps(obj))
    out["metadata"].setdefault("uid", "0b6d3b2e-1c1a-4d2b-9f3e-000000000001")
    return out


def entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"]["managedFields"]}


def conflict_of(exc: pytest.ExceptionInfo[StatusError]) -> dict[str, Any]:
    return exc.value.status()


# -- apply


def test_apply_creates_with_an_apply_entry(fm: FieldManager) -> None:
    applied = widget({"size": 3}, labels={"app": "demo"})
    obj = fm.apply(None, applied, "alice", False, T1)
    assert obj["spec"] == {"size": 3}
    assert obj["metadata"]["managedFields"] == [{
        "manager": "alice",
        "operation": "Apply",
        "apiVersion": API_VERSION,
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:size": {}}},
    }]
    assert list(obj["metadata"]["managedFields"][0]) == [
        "manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]


def test_apply_does_not_mutate_its_inputs(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3, "color": "red"}), "alice", False, T1))
    applied = widget({"size": 4})
    live_before, applied_before = copy.deepcopy(live), copy.deepcopy(applied)
    fm.apply(live, applied, "alice", False, T2)
    assert live == live_before
    assert applied == applied_before


def test_reapply_without_a_field_removes_it(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3, "color": "red"}, labels={"a": "1", "b": "2"}),
                           "alice", False, T1))
    obj = fm.apply(live, widget({"size": 3}, labels={"a": "1"}), "alice", False, T2)
    assert obj["spec"] == {"size": 3}
    assert obj["metadata"]["labels"] == {"a": "1"}
    assert obj["metadata"]["uid"] == live["metadata"]["uid"]
    assert entries(obj)[("alice", "Apply")]["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:size": {}}}


def test_reapply_without_a_whole_struct_removes_it(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}, labels={"a": "1"}), "alice", False, T1))
    obj = fm.apply(live, widget(), "alice", False, T2)
    assert "spec" not in obj
    assert "labels" not in obj["metadata"]
    assert obj["metadata"]["name"] == "w"


def test_field_another_manager_owns_is_kept_when_dropped(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3, "color": "red"}), "alice", False, T1))
    live = stored(fm.apply(live, widget({"color": "red"}), "bob", False, T2))
    obj = fm.apply(live, widget({"size": 3}), "alice", False, T3)
    assert obj["spec"] == {"size": 3, "color": "red"}
    assert entries(obj)[("bob", "Apply")]["fieldsV1"] == {"f:spec": {"f:color": {}}}


def test_unowned_fields_survive_reapply(fm: FieldManager) -> None:
    # Fields nobody owns (server defaults, status) are not the applier's to remove.
    live = fm.apply(None, widget({"size": 3}), "alice", False, T1)
    live["spec"]["replicas"] = 1
    obj = fm.apply(stored(live), widget({"color": "red"}), "alice", False, T2)
    assert obj["spec"] == {"replicas": 1, "color": "red"}


def test_two_appliers_conflict_with_kubes_message(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    with pytest.raises(StatusError) as exc:
        fm.apply(live, widget({"size": 5}), "bob", False, T2)
    assert conflict_of(exc) == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": 'Apply failed with 1 conflict: conflict with "alice": .spec.size',
        "reason": "Conflict", "code": 409,
        "details": {"causes": [{
            "reason": "FieldManagerConflict", "message": 'conflict with "alice"',
            "field": ".spec.size",
        }]},
    }


def test_same_value_is_shared_not_a_conflict(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    obj = stored(fm.apply(live, widget({"size": 3}), "bob", False, T2))
    assert set(entries(obj)) == {("alice", "Apply"), ("bob", "Apply")}
    # A shared field changes only if every owner agrees: alice now conflicts with bob.
    with pytest.raises(StatusError) as exc:
        fm.apply(obj, widget({"size": 4}), "alice", False, T3)
    assert conflict_of(exc)["message"] == (
        'Apply failed with 1 conflict: conflict with "bob": .spec.size')
    # Dropping it from one applier's config leaves it to the other.
    obj = fm.apply(obj, widget({}), "bob", False, T3)
    assert obj["spec"] == {"size": 3}


def test_several_conflicts_are_listed_by_manager(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3, "color": "red"}), "alice", False, T1))
    live = fm.update(live, {**copy.deepcopy(live), "data": {"k": "v"}}, "carol", T2)
    live = stored(live)
    with pytest.raises(StatusError) as exc:
        fm.apply(live, widget({"size": 4, "color": "blue"}, ), "bob", False, T3)
    status = conflict_of(exc)
    assert status["message"] == (
        'Apply failed with 2 conflicts: conflicts with "alice":\n- .spec.color\n- .spec.size')
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"',
         "field": ".spec.color"},
        {"reason": "FieldManagerConflict", "message": 'conflict with "alice"',
         "field": ".spec.size"},
    ]


def test_force_takes_ownership(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3, "color": "red"}), "alice", False, T1))
    obj = fm.apply(live, widget({"size": 5}), "bob", True, T2)
    assert obj["spec"] == {"size": 5, "color": "red"}
    got = entries(obj)
    assert got[("alice", "Apply")]["fieldsV1"] == {"f:spec": {"f:color": {}}}
    assert got[("bob", "Apply")]["fieldsV1"] == {"f:spec": {"f:size": {}}}
    # Alice no longer owns size: dropping it from her config leaves it alone.
    obj = fm.apply(stored(obj), widget({"color": "red"}), "alice", False, T3)
    assert obj["spec"]["size"] == 5


def test_force_removes_a_manager_left_with_nothing(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    obj = fm.apply(live, widget({"size": 5}), "bob", True, T2)
    assert set(entries(obj)) == {("bob", "Apply")}


def test_update_then_apply_conflicts_with_the_updater(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "kubectl", False, T1))
    edited = copy.deepcopy(live)
    edited["spec"]["size"] = 4
    live = stored(fm.update(live, edited, "kubectl-client-side-apply", T2))
    assert entries(live)[("kubectl-client-side-apply", "Update")]["fieldsV1"] == {
        "f:spec": {"f:size": {}}}
    with pytest.raises(StatusError) as exc:
        fm.apply(live, widget({"size": 3}), "kubectl", False, T3)
    status = conflict_of(exc)
    assert status["message"] == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using '
        f'{API_VERSION}: .spec.size')
    assert status["details"]["causes"] == [{
        "reason": "FieldManagerConflict",
        "message": f'conflict with "kubectl-client-side-apply" using {API_VERSION}',
        "field": ".spec.size",
    }]


def test_map_lists_merge_by_key(fm: FieldManager) -> None:
    def containers(*items: dict[str, Any]) -> dict[str, Any]:
        return widget({"template": {"spec": {"containers": list(items)}}})

    live = stored(fm.apply(None, containers({"name": "a", "image": "a:1"},
                                            {"name": "b", "image": "b:1"}), "alice", False, T1))
    live = stored(fm.apply(live, containers({"name": "c", "image": "c:1"}), "bob", False, T2))
    got = live["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in got] == ["a", "b", "c"]
    assert entries(live)[("bob", "Apply")]["fieldsV1"] == {"f:spec": {"f:template": {"f:spec": {
        "f:containers": {'k:{"name":"c"}': {".": {}, "f:image": {}, "f:name": {}}}}}}}
    # Alice drops b and changes a: bob's item stays.
    obj = fm.apply(live, containers({"name": "a", "image": "a:2"}), "alice", False, T3)
    got = obj["spec"]["template"]["spec"]["containers"]
    assert got == [{"name": "a", "image": "a:2"}, {"name": "c", "image": "c:1"}]
    # Bob changing alice's image conflicts at the item's field.
    with pytest.raises(StatusError) as exc:
        fm.apply(stored(obj), containers({"name": "a", "image": "a:3"}), "bob", False, T4)
    assert conflict_of(exc)["details"]["causes"][0]["field"] == (
        '.spec.template.spec.containers[name="a"].image')


def test_map_list_keys_use_schema_defaults(fm: FieldManager) -> None:
    applied = widget({"template": {"spec": {"containers": [
        {"name": "a", "ports": [{"containerPort": 80}]}]}}})
    obj = fm.apply(None, applied, "alice", False, T1)
    fields = entries(obj)[("alice", "Apply")]["fieldsV1"]
    ports = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"a"}']["f:ports"]
    assert ports == {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}


def test_set_lists_merge_values(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"tags": ["a", "b"]}), "alice", False, T1))
    live = stored(fm.apply(live, widget({"tags": ["b", "c"]}), "bob", False, T2))
    assert live["spec"]["tags"] == ["a", "b", "c"]
    assert entries(live)[("bob", "Apply")]["fieldsV1"] == {
        "f:spec": {"f:tags": {'v:"b"': {}, 'v:"c"': {}}}}
    # b is shared: alice dropping it keeps it, dropping a removes a.
    obj = fm.apply(live, widget({"tags": []}), "alice", False, T3)
    assert obj["spec"]["tags"] == ["b", "c"]


def test_atomic_lists_are_replaced_and_owned_whole(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"args": ["x", "y"], "hosts": ["h1"]}), "alice", False,
                           T1))
    assert entries(live)[("alice", "Apply")]["fieldsV1"] == {
        "f:spec": {"f:args": {}, "f:hosts": {}}}
    obj = fm.apply(live, widget({"args": ["z"], "hosts": ["h1"]}), "alice", False, T2)
    assert obj["spec"]["args"] == ["z"]
    with pytest.raises(StatusError) as exc:
        fm.apply(stored(obj), widget({"args": ["x", "z"]}), "bob", False, T3)
    assert conflict_of(exc)["details"]["causes"][0]["field"] == ".spec.args"


def test_atomic_maps_are_owned_whole(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"selector": {"a": "1", "b": "2"}}), "alice", False, T1))
    assert entries(live)[("alice", "Apply")]["fieldsV1"] == {"f:spec": {"f:selector": {}}}
    obj = fm.apply(live, widget({"selector": {"c": "3"}}), "alice", False, T2)
    assert obj["spec"]["selector"] == {"c": "3"}


def test_preserve_unknown_fields_are_deduced(fm: FieldManager) -> None:
    applied = widget({"extra": {"a": {"b": 1}, "list": [1, 2]}})
    obj = fm.apply(None, applied, "alice", False, T1)
    assert entries(obj)[("alice", "Apply")]["fieldsV1"] == {"f:spec": {"f:extra": {
        "f:a": {".": {}, "f:b": {}}, "f:list": {}}}}


def test_noop_apply_keeps_times(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    again = fm.apply(live, widget({"size": 3}), "alice", False, T2)
    assert entries(again)[("alice", "Apply")]["time"] == T1
    # A new co-owner of unchanged values gets no time, as in kube.
    shared = fm.apply(live, widget({"size": 3}), "bob", False, T2)
    assert "time" not in entries(shared)[("bob", "Apply")]


def test_apply_errors_follow_kube() -> None:
    fm = FieldManager(API_VERSION, "Widget", Schema(SCHEMA))
    wrong = {**widget({}), "kind": "Gadget"}
    with pytest.raises(StatusError) as exc:
        fm.apply(None, wrong, "alice", False, T1)
    assert (exc.value.code, exc.value.message) == (
        400, "invalid object type: example.kext.io/v1alpha1, Kind=Gadget")

    with pytest.raises(StatusError) as exc:
        fm.apply(None, widget({}, managedFields=[]), "alice", False, T1)
    assert (exc.value.code, exc.value.message) == (400, "metadata.managedFields must be nil")

    with pytest.raises(StatusError) as exc:
        fm.apply(None, widget({"size": 3, "bogus": True}), "alice", False, T1)
    assert (exc.value.code, exc.value.message) == (500, (
        "failed to create typed patch object (default/w; example.kext.io/v1alpha1, "
        "Kind=Widget): .spec.bogus: field not declared in schema"))

    duplicated = widget({"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}})
    with pytest.raises(StatusError) as exc:
        fm.apply(None, duplicated, "alice", False, T1)
    assert exc.value.message.endswith(
        '.spec.template.spec.containers: duplicate entries for key [name="a"]')

    with pytest.raises(StatusError) as exc:
        fm.apply(None, widget({"size": "three"}), "alice", False, T1)
    assert exc.value.message.endswith(
        ".spec.size: expected numeric (int or float), got string")


def test_status_subresource_entries(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    # The main resource does not own status even when the config carries it.
    obj = fm.apply(live, {**widget({"size": 3}), "status": {"phase": "x"}}, "alice", False, T2)
    assert "f:status" not in entries(obj)[("alice", "Apply")]["fieldsV1"]

    with_status = copy.deepcopy(live)
    with_status["status"] = {"phase": "Ready"}
    with_status["spec"]["size"] = 99  # ignored: /status cannot own spec
    obj = stored(fm.update(live, with_status, "controller", T2, subresource="status"))
    assert entries(obj)[("controller", "Update")] == {
        "manager": "controller", "operation": "Update", "apiVersion": API_VERSION,
        "time": T2, "fieldsType": "FieldsV1",
        "fieldsV1": {"f:status": {".": {}, "f:phase": {}}},
        "subresource": "status",
    }
    status_apply = {**widget(), "status": {"phase": "Failed"}}
    with pytest.raises(StatusError) as exc:
        fm.apply(obj, status_apply, "other", False, T3, subresource="status")
    assert conflict_of(exc)["message"] == (
        'Apply failed with 1 conflict: conflict with "controller" with subresource "status" '
        f'using {API_VERSION}: .status.phase')
    applied = fm.apply(obj, status_apply, "other", True, T3, subresource="status")
    assert entries(applied)[("other", "Apply")]["subresource"] == "status"


def test_status_update_ignores_request_managed_fields(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    new = copy.deepcopy(live)
    new["status"] = {"ready": 1}
    new["metadata"]["managedFields"] = [{"manager": "forged", "operation": "Apply",
                                         "apiVersion": API_VERSION, "fieldsType": "FieldsV1",
                                         "fieldsV1": {"f:spec": {}}}]
    obj = fm.update(live, new, "ctl", T2, subresource="status")
    assert set(entries(obj)) == {("alice", "Apply"), ("ctl", "Update")}


# -- update


def test_create_records_an_update_entry_like_kube(fm: FieldManager) -> None:
    # `kubectl create` of a Deployment-like custom resource: new maps, lists and items are
    # owned themselves (`.`), metadata and the name are nobody's.
    new = widget({
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{
                "name": "nginx", "image": "nginx:1.25",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
            }]},
        },
    }, labels={"app": "nginx"})
    obj = fm.update(None, new, "kubectl-create", T1)
    assert obj is new
    assert obj["metadata"]["managedFields"] == [{
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": API_VERSION,
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                ".": {},
                "f:replicas": {},
                "f:template": {
                    ".": {},
                    "f:metadata": {".": {}, "f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        ".": {},
                        "f:containers": {
                            ".": {},
                            'k:{"name":"nginx"}': {
                                ".": {},
                                "f:image": {},
                                "f:name": {},
                                "f:ports": {
                                    ".": {},
                                    'k:{"containerPort":80,"protocol":"TCP"}': {
                                        ".": {}, "f:containerPort": {}, "f:protocol": {},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    }]


def test_kube_docs_example_adapted_to_a_custom_resource(fm: FieldManager) -> None:
    # The Server-Side Apply page: kubectl applies a label and data.key; a controller then
    # updates data.key and takes it; kubectl re-applying the old value conflicts.
    applied = widget(labels={"test-label": "test"})
    applied["data"] = {"key": "some value"}
    live = stored(fm.apply(None, applied, "kubectl", False, "2010-10-10T00:00:00Z"))
    assert live["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": API_VERSION,
        "time": "2010-10-10T00:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}},
    }]
    changed = copy.deepcopy(live)
    changed["data"]["key"] = "new value"
    live = stored(fm.update(live, changed, "kube-controller-manager", "2019-03-30T16:00:00Z"))
    assert live["metadata"]["managedFields"] == [
        {"manager": "kubectl", "operation": "Apply", "apiVersion": API_VERSION,
         "time": "2010-10-10T00:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}}},
        {"manager": "kube-controller-manager", "operation": "Update",
         "apiVersion": API_VERSION, "time": "2019-03-30T16:00:00Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:data": {"f:key": {}}}},
    ]
    with pytest.raises(StatusError) as exc:
        fm.apply(live, applied, "kubectl", False, T1)
    assert conflict_of(exc)["message"] == (
        'Apply failed with 1 conflict: conflict with "kube-controller-manager" using '
        f'{API_VERSION}: .data.key')


def test_consecutive_updates_merge_into_one_entry(fm: FieldManager) -> None:
    live = stored(fm.update(None, widget({"size": 1}), "editor", T1))
    step = copy.deepcopy(live)
    step["spec"]["color"] = "red"
    live = stored(fm.update(live, step, "editor", T2))
    (entry,) = live["metadata"]["managedFields"]
    assert entry["time"] == T2
    assert entry["fieldsV1"] == {"f:spec": {".": {}, "f:color": {}, "f:size": {}}}
    # An update that changes nothing keeps the time.
    same = fm.update(live, copy.deepcopy(live), "editor", T3)
    assert same["metadata"]["managedFields"][0]["time"] == T2


def test_update_moves_ownership_and_drops_removed_fields(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3, "color": "red"}), "alice", False, T1))
    new = copy.deepcopy(live)
    new["spec"]["size"] = 4
    del new["spec"]["color"]
    obj = fm.update(live, new, "", T2)
    assert entries(obj) == {("unknown", "Update"): {
        "manager": "unknown", "operation": "Update", "apiVersion": API_VERSION, "time": T2,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:size": {}}}}}


def test_updates_per_api_version_are_separate_managers() -> None:
    v1 = FieldManager("example.kext.io/v1", "Widget", Schema(SCHEMA))
    v2 = FieldManager("example.kext.io/v2", "Widget", Schema(SCHEMA))
    live = stored(v1.update(None, widget({"size": 1}), "editor", T1))
    new = copy.deepcopy(live)
    new["spec"]["color"] = "red"
    obj = v2.update(live, new, "editor", T2)
    assert [e["apiVersion"] for e in obj["metadata"]["managedFields"]] == [
        "example.kext.io/v1", "example.kext.io/v2"]


def test_invalid_request_managed_fields_fall_back_to_live(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    for bad in ([{"manager": "x", "operation": "Delete", "apiVersion": "v1",
                  "fieldsType": "FieldsV1"}],
                [{"manager": "x", "operation": "Update", "apiVersion": "v1",
                  "fieldsType": "FieldsV2"}],
                [{"manager": "x", "operation": "Update", "apiVersion": "v1",
                  "fieldsType": "FieldsV1", "time": "yesterday"}],
                ["not an entry"], "not a list"):
        new = copy.deepcopy(live)
        new["metadata"]["managedFields"] = bad
        obj = fm.update(live, new, "editor", T2)
        assert obj["metadata"]["managedFields"] == live["metadata"]["managedFields"], bad


def test_request_managed_fields_replace_live_ones(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{
        "manager": "mallory", "operation": "Update", "apiVersion": API_VERSION,
        "time": "2024-01-01T02:00:00+02:00", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:size": {}}}}]
    obj = fm.update(live, new, "editor", T2)
    assert obj["metadata"]["managedFields"] == [{
        "manager": "mallory", "operation": "Update", "apiVersion": API_VERSION,
        "time": "2024-01-01T00:00:00Z", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:size": {}}}}]


@pytest.mark.parametrize("reset", [[], [{}]])
def test_managed_fields_can_be_reset(fm: FieldManager, reset: list[Any]) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = reset
    new["spec"]["size"] = 4
    obj = stored(fm.update(live, new, "editor", T2))
    assert "managedFields" not in obj["metadata"]
    # Tracking restarts with the next apply, not the next update.
    again = copy.deepcopy(obj)
    again["spec"]["size"] = 5
    assert "managedFields" not in fm.update(obj, again, "editor", T3)["metadata"]
    applied = fm.apply(obj, widget({"size": 6}), "alice", False, T3)
    assert set(entries(applied)) == {("alice", "Apply")}


def test_update_managers_are_capped(fm: FieldManager) -> None:
    live = stored(fm.update(None, widget({}), "m00", "2024-01-01T00:00:00Z"))
    for i in range(1, 12):
        new = copy.deepcopy(live)
        new["spec"][f"k{i}"] = i  # unknown to the schema: owned as untyped leaves
        live = stored(fm.update(live, new, f"m{i:02d}", f"2024-01-01T00:{i:02d}:00Z"))
    managers = [e["manager"] for e in live["metadata"]["managedFields"]]
    assert len(managers) == 10
    assert managers[0] == "ancient-changes"
    assert "m00" not in managers and "m01" not in managers and "m02" not in managers


# -- client-side apply upgrade


def test_kubectl_server_side_apply_takes_over_client_side_apply(fm: FieldManager) -> None:
    last = widget({"size": 3, "color": "red"})
    created = widget({"size": 3, "color": "red"})
    created["metadata"]["annotations"] = {LAST_APPLIED_ANNOTATION: json.dumps(last) + "\n"}
    live = stored(fm.update(None, created, "kubectl-client-side-apply", T1))
    obj = fm.apply(live, widget({"size": 4, "color": "red"}), "kubectl", False, T2)
    assert obj["spec"] == {"size": 4, "color": "red"}
    assert json.loads(obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]) == widget(
        {"size": 4, "color": "red"})
    assert obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].endswith("}\n")
    # Another manager gets no such leeway.
    with pytest.raises(StatusError):
        fm.apply(live, widget({"size": 4}), "someone-else", False, T2)


def test_a_number_turning_boolean_is_a_change(fm: FieldManager) -> None:
    live = stored(fm.update(None, widget({"extra": {"flag": 1}}), "creator", T1))
    new = copy.deepcopy(live)
    new["spec"]["extra"]["flag"] = True
    obj = fm.update(live, new, "toggler", T2)
    assert entries(obj)[("toggler", "Update")]["fieldsV1"] == {
        "f:spec": {"f:extra": {"f:flag": {}}}}


def test_for_version_reads_a_declared_resource() -> None:
    definition = ResourceDefinition(
        group="example.kext.io", plural="widgets", singular="widget", kind="Widget",
        list_kind="WidgetList", namespaced=True,
        versions=(Version("v1alpha1", True, True, SCHEMA, status_subresource=True),),
    )
    version = definition.versions[0]
    # Compiled here, or the compiled schema the version's strategy already holds.
    for fm in (FieldManager.for_version(definition, version),
               FieldManager.for_version(definition, version, Schema(version.schema))):
        assert (fm.api_version, fm.kind, fm.status_subresource) == (API_VERSION, "Widget", True)
        obj = fm.apply(None, {**widget({"size": 1}), "status": {"phase": "x"}}, "a", False, T1)
        assert entries(obj)[("a", "Apply")]["fieldsV1"] == {"f:spec": {"f:size": {}}}


def test_embedded_resources_are_typed_as_objects() -> None:
    # A nested x-kubernetes-embedded-resource gets apiVersion, kind and an ObjectMeta whose
    # labels are owned one by one, and whose finalizers are a set, as at the root.
    schema = Schema({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "properties": {"spec": {"type": "object", "properties": {
                         "size": {"type": "integer"}}}}},
    }}}})
    fm = FieldManager(API_VERSION, "Widget", schema)
    template = {"apiVersion": "v1", "kind": "Pod", "spec": {"size": 1},
                "metadata": {"labels": {"app": "a"}, "finalizers": ["f"]}}
    obj = fm.apply(None, widget({"template": template}), "alice", False, T1)
    assert entries(obj)[("alice", "Apply")]["fieldsV1"] == {"f:spec": {"f:template": {
        "f:apiVersion": {}, "f:kind": {},
        "f:metadata": {"f:finalizers": {'v:"f"': {}}, "f:labels": {"f:app": {}}},
        "f:spec": {"f:size": {}}}}}
    with pytest.raises(StatusError) as exc:
        fm.apply(None, widget({"template": {**template, "kind": 3}}), "alice", False, T1)
    assert exc.value.message.endswith(
        ".spec.template.kind: expected string, got &value.valueUnstructured{Value:3}")


def test_an_entry_with_fields_is_not_a_reset(fm: FieldManager) -> None:
    live = stored(fm.apply(None, widget({"size": 3}), "alice", False, T1))
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{"fieldsV1": {}}]  # invalid, so the live ones stay
    obj = fm.update(live, new, "editor", T2)
    assert obj["metadata"]["managedFields"] == live["metadata"]["managedFields"]
