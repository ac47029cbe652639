"""Server-side apply through Store.apply in memory: it creates or updates, records each
manager's fields in managedFields, and answers a conflict with another manager with kube's
409 unless forced."""

from __future__ import annotations

from typing import Any

import pytest

from kext.registry.rest import RequestContext
from kext.registry.store import Result, Store
from tests.registry.conftest import Storage
from tests.registry.objects import API_VERSION, VERSION, refused, widget

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]


def manager(name: str, **options: Any) -> RequestContext:
    return RequestContext(namespace="ns", field_manager=name, **options)


def intent(**spec: Any) -> Object:
    """What a manager applies: only the fields it cares about."""
    return {"apiVersion": API_VERSION, "kind": "Widget", "metadata": {"name": "w"},
            "spec": spec}


def managers(result: Result) -> dict[str, Object]:
    return {e["manager"]: e for e in result.object["metadata"]["managedFields"]}


async def test_apply_creates_then_updates(widgets: Store) -> None:
    first = await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red"), False)
    assert first.created
    assert first.object["metadata"]["generation"] == 1 and first.object["metadata"]["uid"]
    entry = managers(first)["kubectl"]
    assert (entry["operation"], entry["apiVersion"]) == ("Apply", API_VERSION)
    assert entry["fieldsV1"] == {"f:spec": {"f:color": {}}}
    second = await widgets.apply(manager("kubectl"), "w", VERSION,
                                 intent(color="red", size=3), False)
    assert not second.created
    assert second.object["spec"] == {"color": "red", "size": 3}
    assert second.object["metadata"]["generation"] == 2
    assert managers(second)["kubectl"]["fieldsV1"] == {"f:spec": {"f:color": {}, "f:size": {}}}


async def test_fields_a_manager_stops_applying_are_removed(widgets: Store) -> None:
    await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red", tags=["x"]),
                        False)
    result = await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red"), False)
    assert "tags" not in result.object["spec"]


async def test_another_managers_field_is_a_conflict_unless_forced(widgets: Store) -> None:
    await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red"), False)
    error = await refused(widgets.apply(manager("ci"), "w", VERSION, intent(color="green"),
                                        False))
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == 'Apply failed with 1 conflict: conflict with "kubectl": .spec.color'
    assert [(c.reason, c.message, c.field) for c in error.causes] == [
        ("FieldManagerConflict", 'conflict with "kubectl"', ".spec.color")]
    assert (await widgets.get("ns", "w", VERSION))["spec"]["color"] == "red"

    forced = await widgets.apply(manager("ci"), "w", VERSION, intent(color="green"), True)
    assert forced.object["spec"]["color"] == "green"
    owners = managers(forced)
    assert owners["ci"]["fieldsV1"] == {"f:spec": {"f:color": {}}}
    assert "kubectl" not in owners  # it owned nothing else


async def test_applying_the_same_value_as_another_manager_shares_the_field(
        widgets: Store) -> None:
    await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red"), False)
    shared = await widgets.apply(manager("ci"), "w", VERSION, intent(color="red"), False)
    owners = managers(shared)
    assert set(owners) == {"kubectl", "ci"}


async def test_an_update_after_an_apply_takes_over_what_it_changed(widgets: Store) -> None:
    await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red", size=2), False)

    async def recolor(current: Object | None) -> Object:
        assert current is not None
        return {**current, "spec": {**current["spec"], "color": "blue"}}

    result = await widgets.update(manager("kubectl-edit"), "w", VERSION, recolor)
    owners = managers(result)
    assert owners["kubectl"]["fieldsV1"] == {"f:spec": {"f:size": {}}}
    assert owners["kubectl-edit"]["operation"] == "Update"
    assert owners["kubectl-edit"]["fieldsV1"] == {"f:spec": {"f:color": {}}}


async def test_an_apply_that_changes_nothing_writes_nothing(widgets: Store,
                                                             storage: Storage) -> None:
    first = await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red"), False)
    before = await storage.revision()
    again = await widgets.apply(manager("kubectl"), "w", VERSION, intent(color="red"), False)
    assert await storage.revision() == before
    assert again.object["metadata"]["resourceVersion"] == \
        first.object["metadata"]["resourceVersion"]


async def test_dry_run_apply_stores_nothing(widgets: Store, storage: Storage) -> None:
    before = await storage.revision()
    dry = manager("kubectl", dry_run=True)
    result = await widgets.apply(dry, "w", VERSION, intent(color="red"), False)
    assert result.created and result.object["spec"]["color"] == "red"
    assert await storage.revision() == before
    assert (await refused(widgets.get("ns", "w", VERSION))).code == 404
    await widgets.create(manager("test"), VERSION, widget())
    before = await storage.revision()
    changed = await widgets.apply(dry, "w", VERSION, intent(color="green"), True)
    assert changed.object["spec"]["color"] == "green"
    assert await storage.revision() == before


async def test_apply_to_status_of_a_missing_object_is_not_found(widgets: Store) -> None:
    status = manager("kubectl", subresource="status")
    body = {**intent(), "status": {"phase": "Ready"}}
    error = await refused(widgets.apply(status, "w", VERSION, body, False))
    assert error.code == 404
    await widgets.create(manager("test"), VERSION, widget())
    result = await widgets.apply(status, "w", VERSION, body, False)
    assert result.object["status"] == {"phase": "Ready"}
    assert managers(result)["kubectl"]["subresource"] == "status"


async def test_an_applied_name_must_match_the_url(widgets: Store) -> None:
    body = intent(color="red")
    body["metadata"]["name"] = "other"
    error = await refused(widgets.apply(manager("kubectl"), "w", VERSION, body, False))
    assert (error.code, error.message) == (
        400, "the name of the object (other) does not match the name on the URL (w)")


async def test_an_invalid_apply_is_422(widgets: Store) -> None:
    error = await refused(widgets.apply(manager("kubectl"), "w", VERSION, intent(size=0),
                                        False))
    assert error.code == 422
    assert [c.field for c in error.causes] == ["spec.size"]
