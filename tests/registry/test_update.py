"""Store.update in memory (a MemoryStore, and a watch cache on one): optimistic concurrency,
generation, the fields a client cannot change, the status subresource, and an update
function run again when a concurrent write got there first (what PATCH relies on)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from kext.api.resource import parse_crd
from kext.registry.rest import Admission, RequestContext
from kext.registry.store import Result, Store, UpdatedObject
from tests.kext_process import REPO
from tests.registry.conftest import Storage
from tests.registry.objects import VERSION, change, refused, widget

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
CTX = RequestContext(namespace="ns", field_manager="test")
STATUS = RequestContext(namespace="ns", field_manager="test", subresource="status")
MODIFIED = ('Operation cannot be fulfilled on widgets.example.kext.io "w": the object has been '
            "modified; please apply your changes to the latest version and try again")


def replace_with(body: Object) -> UpdatedObject:
    """A PUT's update function: the body, whatever is stored."""
    async def updated(current: Object | None) -> Object:
        return copy.deepcopy(body)
    return updated


async def created(store: Store, body: Object | None = None) -> Object:
    result = await store.create(CTX, VERSION, body or widget())
    return result.object


async def put(store: Store, body: Object, ctx: RequestContext = CTX) -> Result:
    return await store.update(ctx, "w", VERSION, replace_with(body))


async def test_a_put_with_a_stale_resource_version_is_a_conflict(widgets: Store) -> None:
    stale = await created(widgets)
    fresh = await put(widgets, {**stale, "spec": {"color": "red"}})
    assert fresh.object["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"]
    error = await refused(put(widgets, {**stale, "spec": {"color": "green"}}))
    assert (error.code, error.reason, error.message) == (409, "Conflict", MODIFIED)
    assert error.status()["details"] == {"name": "w", "group": "example.kext.io",
                                         "kind": "widgets"}
    assert (await widgets.get("ns", "w", VERSION))["spec"]["color"] == "red"


async def test_a_put_must_carry_a_resource_version(widgets: Store) -> None:
    current = await created(widgets)
    del current["metadata"]["resourceVersion"]
    error = await refused(put(widgets, current))
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == ('Widget.example.kext.io "w" is invalid: metadata.resourceVersion: '
                             "Invalid value: 0: must be specified for an update")


async def test_a_missing_object_is_not_found(widgets: Store) -> None:
    error = await refused(put(widgets, widget()))
    assert (error.code, error.message) == (404, 'widgets.example.kext.io "w" not found')


async def test_generation_moves_with_the_spec_only(widgets: Store) -> None:
    current = await created(widgets)
    assert current["metadata"]["generation"] == 1
    labelled = await widgets.update(CTX, "w", VERSION, change(
        lambda o: o["metadata"].update(labels={"tier": "gold"})))
    assert labelled.object["metadata"]["generation"] == 1
    assert labelled.object["metadata"]["labels"] == {"tier": "gold"}
    resized = await widgets.update(CTX, "w", VERSION, change(
        lambda o: o["spec"].update(size=4)))
    assert resized.object["metadata"]["generation"] == 2
    # a client cannot move generation itself
    forced = await widgets.update(CTX, "w", VERSION, change(
        lambda o: o["metadata"].update(generation=10)))
    assert forced.object["metadata"]["generation"] == 2


async def test_an_update_that_changes_nothing_writes_nothing(widgets: Store,
                                                             storage: Storage) -> None:
    current = await created(widgets)
    before = await storage.revision()
    result = await put(widgets, current)
    assert await storage.revision() == before
    assert result.object["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]


async def test_the_main_resource_ignores_status(widgets: Store) -> None:
    await created(widgets)
    await widgets.update(STATUS, "w", VERSION, change(
        lambda o: o.update(status={"phase": "Ready"})))
    result = await widgets.update(CTX, "w", VERSION, change(
        lambda o: o.update(status={"phase": "Failed"})))
    assert result.object["status"] == {"phase": "Ready"}
    assert result.object["metadata"]["generation"] == 1
    dropped = await widgets.update(CTX, "w", VERSION, change(lambda o: o.pop("status")))
    assert dropped.object["status"] == {"phase": "Ready"}


async def test_the_status_subresource_changes_only_status(widgets: Store) -> None:
    await created(widgets)

    def edit(obj: Object) -> None:
        obj["status"] = {"phase": "Ready", "observedGeneration": 1}
        obj["spec"]["size"] = 9
        obj["metadata"]["labels"] = {"sneaked": "in"}

    result = await widgets.update(STATUS, "w", VERSION, change(edit))
    stored = await widgets.get("ns", "w", VERSION)
    assert stored == result.object
    assert stored["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert stored["spec"] == {"color": "blue", "size": 1}
    assert "labels" not in stored["metadata"]
    assert stored["metadata"]["generation"] == 1
    managers = [(e["manager"], e.get("subresource", "")) for e in
                stored["metadata"]["managedFields"]]
    assert ("test", "status") in managers


async def test_status_through_the_subresource_is_validated(widgets: Store) -> None:
    await created(widgets)
    error = await refused(widgets.update(STATUS, "w", VERSION, change(
        lambda o: o.update(status={"observedGeneration": "one"}))))
    assert error.code == 422
    assert [c.field for c in error.causes] == ["status.observedGeneration"]


async def test_a_version_without_the_status_subresource_has_no_status_path(
        storage: Storage) -> None:
    crd = yaml.safe_load((REPO / "config/resources/widgets.yaml").read_text())
    del crd["spec"]["versions"][0]["subresources"]
    definition, problems = parse_crd(crd, "widgets")
    assert definition is not None, problems
    store = await storage.store(definition)
    await store.create(CTX, VERSION, widget())
    error = await refused(store.update(STATUS, "w", VERSION, change(lambda o: None)))
    assert (error.code, error.reason) == (404, "NotFound")
    # without the subresource, status is the client's to write on the main resource
    result = await store.update(CTX, "w", VERSION, change(
        lambda o: o.update(status={"phase": "Ready"})))
    assert result.object["status"] == {"phase": "Ready"}


async def test_metadata_a_client_cannot_change(widgets: Store) -> None:
    current = await created(widgets)
    changed_uid = copy.deepcopy(current)
    changed_uid["metadata"]["uid"] = "another"
    error = await refused(put(widgets, changed_uid))
    assert error.code == 422
    assert error.message == ('Widget.example.kext.io "w" is invalid: metadata.uid: Invalid '
                             'value: "another": field is immutable')
    # creationTimestamp is silently kept, as rest.BeforeUpdate does; an empty uid is filled in
    quiet = copy.deepcopy(current)
    quiet["metadata"]["creationTimestamp"] = "2001-01-01T00:00:00Z"
    del quiet["metadata"]["uid"]
    quiet["spec"]["size"] = 2
    result = await put(widgets, quiet)
    assert result.object["metadata"]["creationTimestamp"] == \
        current["metadata"]["creationTimestamp"]
    assert result.object["metadata"]["uid"] == current["metadata"]["uid"]


async def test_the_name_on_the_url_is_the_objects(widgets: Store) -> None:
    current = await created(widgets)
    renamed = copy.deepcopy(current)
    renamed["metadata"]["name"] = "other"
    error = await refused(put(widgets, renamed))
    assert (error.code, error.message) == (
        400, "the name of the object (other) does not match the name on the URL (w)")
    moved = copy.deepcopy(current)
    moved["metadata"]["namespace"] = "other"
    error = await refused(put(widgets, moved))
    assert error.code == 400
    unnamed = copy.deepcopy(current)
    del unnamed["metadata"]["name"]
    assert (await put(widgets, {**unnamed, "spec": {"color": "red"}})).object[
        "metadata"]["name"] == "w"


async def test_an_update_function_runs_again_after_a_concurrent_write(
        widgets: Store) -> None:
    await created(widgets, widget(tags=["a"]))
    seen: list[list[str]] = []

    async def add_tag(current: Object | None) -> Object:
        assert current is not None
        seen.append(list(current["spec"]["tags"]))
        if len(seen) == 1:
            # another client writes between this attempt's read and its write
            await widgets.update(CTX, "w", VERSION, change(
                lambda o: o["spec"]["tags"].append("b")))
        new = copy.deepcopy(current)
        new["spec"]["tags"].append("c")
        return new

    result = await widgets.update(CTX, "w", VERSION, add_tag)
    assert seen == [["a"], ["a", "b"]]
    assert result.object["spec"]["tags"] == ["a", "b", "c"]


async def test_a_put_does_not_run_again_after_a_concurrent_write(widgets: Store) -> None:
    # the body of a PUT carries the resourceVersion it was read at: a retry stays a conflict
    current = await created(widgets)
    calls = 0

    async def stale_put(_: Object | None) -> Object:
        nonlocal calls
        calls += 1
        if calls == 1:
            await widgets.update(CTX, "w", VERSION, change(lambda o: o["spec"].update(size=3)))
        return {**copy.deepcopy(current), "spec": {"color": "red"}}

    error = await refused(widgets.update(CTX, "w", VERSION, stale_put))
    assert error.message == MODIFIED
    assert calls == 2


async def test_dry_run_update_answers_the_result_and_stores_nothing(
        widgets: Store, storage: Storage) -> None:
    current = await created(widgets)
    before = await storage.revision()
    dry = RequestContext(namespace="ns", field_manager="test", dry_run=True)
    result = await widgets.update(dry, "w", VERSION, change(lambda o: o["spec"].update(size=8)))
    assert result.object["spec"]["size"] == 8
    assert result.object["metadata"]["generation"] == 2
    assert await storage.revision() == before
    assert await widgets.get("ns", "w", VERSION) == current
    status = await widgets.update(RequestContext(namespace="ns", field_manager="test",
                                                 dry_run=True, subresource="status"),
                                  "w", VERSION, change(lambda o: o.update(status={"phase": "X"})))
    assert status.object["status"] == {"phase": "X"}
    assert await storage.revision() == before


async def test_unknown_fields_warn_on_update_and_strict_refuses(widgets: Store) -> None:
    await created(widgets)
    result = await widgets.update(CTX, "w", VERSION, change(
        lambda o: o["spec"].update(shape="round")))
    assert result.warnings == ['unknown field "spec.shape"']
    assert "shape" not in result.object["spec"]
    strict = RequestContext(namespace="ns", field_manager="test", field_validation="Strict")
    error = await refused(widgets.update(strict, "w", VERSION, change(
        lambda o: o["spec"].update(shape="round"))))
    assert error.message == 'strict decoding error: unknown field "spec.shape"'


async def test_mutating_admission_must_return_an_object(widgets: Store) -> None:
    await created(widgets)

    async def broken(obj: Object, old: Object | None) -> Object:
        return {"spec": {}}  # no metadata

    error = await refused(widgets.update(CTX, "w", VERSION, change(lambda o: None),
                                         Admission(mutate=broken)))
    assert (error.code, error.message) == (
        500, "Internal error occurred: mutating admission returned no object with metadata")
    error = await refused(widgets.create(CTX, VERSION, widget("x"), Admission(mutate=broken)))
    assert error.code == 500


async def test_metadata_must_be_an_object_on_update(widgets: Store) -> None:
    await created(widgets)
    error = await refused(widgets.update(CTX, "w", VERSION, change(
        lambda o: o.update(metadata=[]))))
    assert (error.code, error.message) == (400, "metadata must be an object")
