"""The scale subresource in the registry (a real etcd): the Scale made from an object, a write
through it that changes only the replicas, its resourceVersion precondition, admission seeing
Scales, and kube's messages when the replicas field is missing or of the wrong type."""

from __future__ import annotations

from typing import Any

import pytest

from examples.gizmo_conversion import convert
from kext.api.errors import StatusError
from kext.api.resource import ScaleSubresource
from kext.registry.conversion import new_converter
from kext.registry.rest import Admission, RequestContext
from kext.registry.scale import scale_from_custom_resource, validate_scale_fields
from kext.registry.store import Store
from tests.registry.test_conversion import gizmo, gizmos
from tests.storage.memory import MemoryStore

Object = dict[str, Any]
SCALE = ScaleSubresource(".spec.replicas", ".status.replicas", ".status.selector")
PREFIX = "/registry"
CTX = RequestContext(namespace="ns", field_manager="test")
SCALE_CTX = RequestContext(namespace="ns", subresource="scale", field_manager="scaler")


def test_a_scale_shows_the_three_fields_with_kubes_zero_values() -> None:
    cr = {"metadata": {"name": "g", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                       "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"a": "b"}},
          "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=g"}}
    scale, found = scale_from_custom_resource(cr, SCALE)
    assert found
    assert scale == {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "g", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=g"}}
    empty, found = scale_from_custom_resource({"metadata": {"name": "g"}}, SCALE)
    assert not found
    # spec.replicas 0 is left out, status.replicas never (Go's omitempty on one only)
    assert empty["spec"] == {} and empty["status"] == {"replicas": 0}


def test_scale_fields_are_validated_on_every_write() -> None:
    assert validate_scale_fields({"spec": {"replicas": 1}}, SCALE) == []
    causes = validate_scale_fields(
        {"spec": {"replicas": -1}, "status": {"replicas": "two", "selector": 5}}, SCALE)
    assert [(c.field, c.message) for c in causes] == [
        (".spec.replicas", "Invalid value: -1: should be a non-negative integer"),
        (".status.replicas", "Invalid value: 0: .status.replicas accessor error: two is of the "
                             "type string, expected int64"),
        (".status.selector", 'Invalid value: "": .status.selector accessor error: 5 is of the '
                             "type int64, expected string"),
    ]


@pytest.fixture
def gizmo_store(memory: MemoryStore) -> Store:
    """Gizmos, converted between their versions by the example converter."""
    return Store(gizmos(), memory, PREFIX, converter=new_converter(gizmos(), hook=convert))


@pytest.mark.asyncio
async def test_a_write_through_scale_changes_only_the_replicas(gizmo_store: Store) -> None:
    await gizmo_store.create(CTX, "v1", gizmo("v1", replicas=1, color="red"))
    seen: list[tuple[Object, Object | None]] = []

    async def validate(new: Object, old: Object | None) -> None:
        seen.append((new, old))

    async def wanted(current: Object) -> Object:
        assert current["kind"] == "Scale" and current["spec"] == {"replicas": 1}
        current["spec"]["replicas"] = 4
        current["status"]["replicas"] = 9  # a Scale's status is not written back
        return current

    result = await gizmo_store.update_scale(SCALE_CTX, "g", "v1", wanted,
                                            Admission(None, validate))
    assert result.object["kind"] == "Scale"
    assert result.object["spec"] == {"replicas": 4} and result.object["status"]["replicas"] == 0
    got = await gizmo_store.get("ns", "g", "v1")
    assert got["spec"] == {"replicas": 4, "color": "red"} and "status" not in got
    assert got["metadata"]["generation"] == 2  # the spec changed
    entry = next(e for e in got["metadata"]["managedFields"] if e["manager"] == "scaler")
    assert entry["subresource"] == "scale" and entry["fieldsV1"] == {
        "f:spec": {"f:replicas": {}}}
    # validating admission saw the Scales, new and old
    (new, old), = seen
    assert new["kind"] == "Scale" and new["spec"]["replicas"] == 4
    assert old is not None and old["spec"]["replicas"] == 1

    # through the other version: its own replicas field (spec.count), converted
    scale = await gizmo_store.get_scale("ns", "g", "v1beta1")
    assert scale["spec"] == {"replicas": 4}


@pytest.mark.asyncio
async def test_a_stale_scale_resource_version_is_a_conflict(gizmo_store: Store) -> None:
    created = await gizmo_store.create(CTX, "v1", gizmo("v1", replicas=1))
    stale = created.object["metadata"]["resourceVersion"]

    async def bump(current: Object) -> Object:
        current["spec"]["replicas"] += 1
        return current

    await gizmo_store.update_scale(SCALE_CTX, "g", "v1", bump)

    async def with_stale(current: Object) -> Object:
        current["metadata"]["resourceVersion"] = stale
        current["spec"]["replicas"] = 5
        return current

    with pytest.raises(StatusError) as caught:
        await gizmo_store.update_scale(SCALE_CTX, "g", "v1", with_stale)
    assert caught.value.code == 409 and caught.value.message == (
        'Operation cannot be fulfilled on gizmos.test.kext.io "g": the object has been '
        "modified; please apply your changes to the latest version and try again")


@pytest.mark.asyncio
async def test_an_object_without_replicas(gizmo_store: Store) -> None:
    await gizmo_store.create(CTX, "v1", gizmo("v1", color="red"))
    with pytest.raises(StatusError) as caught:
        await gizmo_store.get_scale("ns", "g", "v1")
    assert (caught.value.code, caught.value.message) == (
        500, 'Internal error occurred: the spec replicas field ".spec.replicas" does not exist')

    async def unchanged(current: Object) -> Object:
        return current

    with pytest.raises(StatusError) as caught:
        await gizmo_store.update_scale(SCALE_CTX, "g", "v1", unchanged)
    assert (caught.value.code, caught.value.message) == (
        400, 'the spec replicas field ".spec.replicas" cannot be empty')

    async def set_three(current: Object) -> Object:
        current["spec"]["replicas"] = 3
        return current

    result = await gizmo_store.update_scale(SCALE_CTX, "g", "v1", set_three)
    assert result.object["spec"] == {"replicas": 3}


@pytest.mark.asyncio
async def test_negative_replicas_are_refused_by_the_objects_validation(
        gizmo_store: Store) -> None:
    await gizmo_store.create(CTX, "v1", gizmo("v1", replicas=1))

    async def negative(current: Object) -> Object:
        current["spec"]["replicas"] = -2
        return current

    with pytest.raises(StatusError) as caught:
        await gizmo_store.update_scale(SCALE_CTX, "g", "v1", negative)
    assert caught.value.code == 422
    assert {c.field for c in caught.value.causes} == {"spec.replicas", ".spec.replicas"}


@pytest.fixture
def memory() -> MemoryStore:
    """The storage under the store: in memory (the same contract as etcd's)."""
    return MemoryStore()
