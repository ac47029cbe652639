"""Store.create in memory (a MemoryStore, and a watch cache on one): the system fields a
created object gets, generateName, and kube's answers to what a create may not do."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from kext.registry.rest import RequestContext
from kext.registry.store import Store
from tests.registry.conftest import Storage
from tests.registry.objects import API_VERSION, VERSION, gadget, refused, widget

pytestmark = pytest.mark.asyncio

CTX = RequestContext(namespace="ns", field_manager="test")


async def test_a_created_object_gets_its_system_fields(widgets: Store) -> None:
    body = widget(size=2)
    body["metadata"].update(uid="chosen-by-client", generation=7,
                            deletionTimestamp="2020-01-01T00:00:00Z")
    result = await widgets.create(CTX, VERSION, body)
    meta = result.object["metadata"]
    assert uuid.UUID(meta["uid"]) and meta["uid"] != "chosen-by-client"
    created = datetime.strptime(meta["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs(datetime.now(UTC).replace(tzinfo=None) - created) < timedelta(seconds=5)
    assert meta["generation"] == 1
    assert meta["namespace"] == "ns"
    assert "deletionTimestamp" not in meta
    assert int(meta["resourceVersion"]) > 0
    assert result.object["apiVersion"] == API_VERSION
    assert result.object["spec"] == {"color": "blue", "size": 2}
    assert await widgets.get("ns", "w", VERSION) == result.object


async def test_defaults_from_the_schema_are_stored(widgets: Store) -> None:
    result = await widgets.create(CTX, VERSION, widget())
    assert result.object["spec"]["size"] == 1  # the schema's default


async def test_generate_name_makes_a_fresh_name_each_time(widgets: Store) -> None:
    names = set()
    for _ in range(3):
        body = widget()
        body["metadata"] = {"generateName": "w-"}
        result = await widgets.create(CTX, VERSION, body)
        name = result.object["metadata"]["name"]
        assert re.fullmatch(r"w-[a-z0-9]{5}", name), name
        assert result.object["metadata"]["generateName"] == "w-"
        names.add(name)
    assert len(names) == 3


async def test_a_second_create_of_a_name_is_already_exists(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget())
    error = await refused(widgets.create(CTX, VERSION, widget(size=5)))
    assert (error.code, error.reason) == (409, "AlreadyExists")
    assert error.status()["message"] == 'widgets.example.kext.io "w" already exists'
    assert error.status()["details"] == {"name": "w", "group": "example.kext.io",
                                         "kind": "widgets"}
    assert (await widgets.get("ns", "w", VERSION))["spec"]["size"] == 1


async def test_the_same_name_in_another_namespace_is_another_object(widgets: Store) -> None:
    first = await widgets.create(CTX, VERSION, widget())
    other = await widgets.create(RequestContext(namespace="other", field_manager="test"),
                                 VERSION, widget())
    assert first.object["metadata"]["uid"] != other.object["metadata"]["uid"]


async def test_a_resource_version_on_create_is_refused(widgets: Store,
                                                       storage: Storage) -> None:
    body = widget()
    body["metadata"]["resourceVersion"] = "5"
    before = await storage.revision()
    error = await refused(widgets.create(CTX, VERSION, body))
    # kube's etcd3 store answers this with a 500 of no reason (ErrResourceVersionSetOnCreate,
    # which no error interpreter maps), in these words
    assert (error.code, error.reason) == (500, "")
    assert error.message == "resourceVersion should not be set on objects to be created"
    assert await storage.revision() == before


async def test_invalid_objects_are_422_with_every_cause(widgets: Store) -> None:
    body = widget(size=0, color="purple")
    body["metadata"]["name"] = "Not_A_Name"
    error = await refused(widgets.create(CTX, VERSION, body))
    assert (error.code, error.reason) == (422, "Invalid")
    fields = [c.field for c in error.causes]
    assert fields == ["metadata.name", "spec.size", "spec.color"]
    assert error.message.startswith('Widget.example.kext.io "Not_A_Name" is invalid: [')


async def test_type_meta_must_name_the_resource(widgets: Store) -> None:
    wrong_kind = widget()
    wrong_kind["kind"] = "Gadget"
    error = await refused(widgets.create(CTX, VERSION, wrong_kind))
    assert (error.code, error.message) == (
        400, "the kind in the data (Gadget) does not match the expected kind (Widget)")
    wrong_version = widget()
    wrong_version["apiVersion"] = "example.kext.io/v9"
    error = await refused(widgets.create(CTX, VERSION, wrong_version))
    assert error.message == ("the API version in the data (example.kext.io/v9) does not match "
                             "the expected API version (example.kext.io/v1alpha1)")
    no_kind = widget()
    del no_kind["kind"]
    error = await refused(widgets.create(CTX, VERSION, no_kind))
    assert error.message == "Object 'Kind' is missing in the request body"
    no_version = widget()
    del no_version["apiVersion"]
    error = await refused(widgets.create(CTX, VERSION, no_version))
    assert error.message == "Object 'apiVersion' is missing in the request body"
    error = await refused(widgets.create(CTX, VERSION, {**widget(), "metadata": "w"}))
    assert (error.code, error.message) == (400, "metadata must be an object")


async def test_a_namespace_in_the_body_must_match_the_request(widgets: Store) -> None:
    body = widget()
    body["metadata"]["namespace"] = "elsewhere"
    error = await refused(widgets.create(CTX, VERSION, body))
    assert (error.code, error.message) == (
        400, "the namespace of the provided object does not match the namespace sent on the "
        "request")


async def test_a_cluster_scoped_object_has_no_namespace(gadgets: Store) -> None:
    body = gadget()
    body["metadata"]["namespace"] = "ignored"
    result = await gadgets.create(RequestContext(field_manager="test"), VERSION, body)
    assert "namespace" not in result.object["metadata"]
    assert gadgets.key("", "g").endswith("/example.kext.io/gadgets/g")
    assert (await gadgets.get("", "g", VERSION))["spec"] == {"model": "m1", "replicas": 1}


async def test_status_is_not_set_on_create_when_it_is_a_subresource(widgets: Store) -> None:
    body = widget()
    body["status"] = {"phase": "Ready"}
    result = await widgets.create(CTX, VERSION, body)
    assert "status" not in result.object


@pytest.mark.parametrize(("validation", "warnings"), [
    ("Warn", ['unknown field "spec.shape"', 'unknown field "extra"']),
    ("Ignore", []),
])
async def test_unknown_fields_are_pruned_with_a_warning_or_silently(
        widgets: Store, validation: str, warnings: list[str]) -> None:
    body = {**widget(shape="round"), "extra": 1}
    ctx = RequestContext(namespace="ns", field_manager="test", field_validation=validation)
    result = await widgets.create(ctx, VERSION, body)
    assert sorted(result.warnings) == sorted(warnings)
    stored = await widgets.get("ns", "w", VERSION)
    assert "shape" not in stored["spec"] and "extra" not in stored


async def test_strict_field_validation_refuses_unknown_fields(widgets: Store,
                                                              storage: Storage) -> None:
    ctx = RequestContext(namespace="ns", field_manager="test", field_validation="Strict")
    before = await storage.revision()
    error = await refused(widgets.create(ctx, VERSION, widget(shape="round")))
    assert (error.code, error.message) == (
        400, 'strict decoding error: unknown field "spec.shape"')
    assert await storage.revision() == before


async def test_dry_run_create_answers_the_object_and_stores_nothing(
        widgets: Store, storage: Storage) -> None:
    before = await storage.revision()
    dry = RequestContext(namespace="ns", field_manager="test", dry_run=True)
    result = await widgets.create(dry, VERSION, widget(size=3))
    meta = result.object["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    assert "resourceVersion" not in meta
    assert result.object["spec"]["size"] == 3
    assert await storage.revision() == before
    error = await refused(widgets.get("ns", "w", VERSION))
    assert error.code == 404
    # a dry run is checked like a real create: the name is still free, and taken names are not
    await widgets.create(CTX, VERSION, widget())
    error = await refused(widgets.create(dry, VERSION, widget()))
    assert error.reason == "AlreadyExists"


async def test_a_create_records_the_manager_in_managed_fields(widgets: Store) -> None:
    result = await widgets.create(CTX, VERSION, widget(size=2))
    [entry] = result.object["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == (
        "test", "Update", API_VERSION)
    assert entry["fieldsV1"]["f:spec"] == {".": {}, "f:color": {}, "f:size": {}}
