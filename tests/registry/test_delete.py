"""Store.delete and delete_collection in memory: preconditions, finalizers (an object is
marked, kept until its last finalizer goes, then deleted), dry-run, and selectors."""

from __future__ import annotations

from typing import Any

import pytest

from kext.api.selectors import parse_field_selector, parse_label_selector
from kext.registry.rest import RequestContext
from kext.registry.store import DeleteOptions, Selection, Store
from kext.storage.interface import ListOptions, Preconditions
from tests.registry.conftest import Storage
from tests.registry.objects import VERSION, change, refused, widget

pytestmark = pytest.mark.asyncio

Object = dict[str, Any]
CTX = RequestContext(namespace="ns", field_manager="test")
DRY = RequestContext(namespace="ns", field_manager="test", dry_run=True)
KEEP = "example.kext.io/keep"
NOW = DeleteOptions()


async def names(store: Store, namespace: str = "ns") -> list[str]:
    listed = await store.get_list(namespace, VERSION, Selection(), ListOptions())
    return [i["metadata"]["name"] for i in listed["items"]]


async def test_delete_answers_the_object_and_it_is_gone(widgets: Store) -> None:
    created = (await widgets.create(CTX, VERSION, widget())).object
    result = await widgets.delete(CTX, "w", VERSION, NOW)
    assert result.deleted
    assert result.object["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(result.object["metadata"]["resourceVersion"]) > \
        int(created["metadata"]["resourceVersion"])
    error = await refused(widgets.get("ns", "w", VERSION))
    assert (error.code, error.message) == (404, 'widgets.example.kext.io "w" not found')
    error = await refused(widgets.delete(CTX, "w", VERSION, NOW))
    assert error.code == 404


async def test_preconditions_guard_a_delete(widgets: Store) -> None:
    created = (await widgets.create(CTX, VERSION, widget())).object
    meta = created["metadata"]
    wrong_uid = DeleteOptions(preconditions=Preconditions(uid="not-it"))
    error = await refused(widgets.delete(CTX, "w", VERSION, wrong_uid))
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == (
        'Operation cannot be fulfilled on widgets.example.kext.io "w": Precondition failed: '
        f"UID in precondition: not-it, UID in object meta: {meta['uid']}")
    wrong_rv = DeleteOptions(preconditions=Preconditions(resource_version="1"))
    error = await refused(widgets.delete(CTX, "w", VERSION, wrong_rv))
    assert error.message == (
        'Operation cannot be fulfilled on widgets.example.kext.io "w": Precondition failed: '
        f"ResourceVersion in precondition: 1, ResourceVersion in object meta: "
        f"{meta['resourceVersion']}")
    assert await names(widgets) == ["w"]
    right = DeleteOptions(preconditions=Preconditions(meta["uid"], meta["resourceVersion"]))
    assert (await widgets.delete(CTX, "w", VERSION, right)).deleted


async def test_an_unknown_propagation_policy_is_422(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget())
    error = await refused(widgets.delete(CTX, "w", VERSION,
                                         DeleteOptions(propagation_policy="Sometimes")))
    assert (error.code, error.reason) == (422, "Invalid")
    assert error.message == (
        'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
        '"Sometimes": supported values: "Foreground", "Background", "Orphan"')
    for policy in ("Orphan", "Background", "Foreground"):
        await widgets.create(CTX, VERSION, widget(policy.lower()))
        assert (await widgets.delete(CTX, policy.lower(), VERSION,
                                     DeleteOptions(propagation_policy=policy))).deleted


async def test_finalizers_keep_an_object_until_the_last_is_removed(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget(finalizers=[KEEP, "example.kext.io/also"]))
    marked = await widgets.delete(CTX, "w", VERSION, NOW)
    assert not marked.deleted
    meta = marked.object["metadata"]
    assert meta["deletionTimestamp"] and meta["deletionGracePeriodSeconds"] == 0
    assert meta["generation"] == 2  # controllers see the deletion as a new generation
    assert (await widgets.get("ns", "w", VERSION))["metadata"]["deletionTimestamp"] == \
        meta["deletionTimestamp"]

    # deleting again changes nothing: the object stays marked, with the same timestamp
    again = await widgets.delete(CTX, "w", VERSION, NOW)
    assert not again.deleted
    assert again.object["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]
    assert again.object["metadata"]["generation"] == 2

    one_left = await widgets.update(CTX, "w", VERSION, change(
        lambda o: o["metadata"].update(finalizers=["example.kext.io/also"])))
    assert not one_left.deleted
    assert one_left.object["metadata"]["deletionTimestamp"] == meta["deletionTimestamp"]

    last = await widgets.update(CTX, "w", VERSION, change(
        lambda o: o["metadata"].pop("finalizers")))
    assert last.deleted
    assert (await refused(widgets.get("ns", "w", VERSION))).code == 404


async def test_no_finalizer_can_be_added_while_deleting(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget(finalizers=[KEEP]))
    await widgets.delete(CTX, "w", VERSION, NOW)
    error = await refused(widgets.update(CTX, "w", VERSION, change(
        lambda o: o["metadata"]["finalizers"].append("example.kext.io/late"))))
    assert error.code == 422
    assert error.message == (
        'Widget.example.kext.io "w" is invalid: metadata.finalizers: Forbidden: no new '
        'finalizers can be added if the object is being deleted, found new finalizers '
        '[]string{"example.kext.io/late"}')


async def test_a_client_cannot_undo_a_deletion(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget(finalizers=[KEEP]))
    marked = (await widgets.delete(CTX, "w", VERSION, NOW)).object
    result = await widgets.update(CTX, "w", VERSION, change(
        lambda o: (o["metadata"].pop("deletionTimestamp"), o["spec"].update(size=2))))
    assert result.object["metadata"]["deletionTimestamp"] == \
        marked["metadata"]["deletionTimestamp"]


async def test_preconditions_guard_marking_for_deletion(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget(finalizers=[KEEP]))
    error = await refused(widgets.delete(
        CTX, "w", VERSION, DeleteOptions(preconditions=Preconditions(uid="not-it"))))
    assert error.code == 409
    assert "deletionTimestamp" not in (await widgets.get("ns", "w", VERSION))["metadata"]


async def test_dry_run_delete_answers_and_keeps_the_object(widgets: Store,
                                                           storage: Storage) -> None:
    created = (await widgets.create(CTX, VERSION, widget())).object
    before = await storage.revision()
    result = await widgets.delete(DRY, "w", VERSION, NOW)
    assert result.deleted and result.object["metadata"]["uid"] == created["metadata"]["uid"]
    assert await storage.revision() == before
    assert await widgets.get("ns", "w", VERSION) == created
    # a dry run checks what a delete would: preconditions, and that there is an object
    error = await refused(widgets.delete(
        DRY, "w", VERSION, DeleteOptions(preconditions=Preconditions(uid="not-it"))))
    assert error.code == 409
    assert (await refused(widgets.delete(DRY, "nothing", VERSION, NOW))).code == 404


async def test_dry_run_delete_of_a_finalized_object_marks_nothing(
        widgets: Store, storage: Storage) -> None:
    created = (await widgets.create(CTX, VERSION, widget(finalizers=[KEEP]))).object
    before = await storage.revision()
    result = await widgets.delete(DRY, "w", VERSION, NOW)
    assert not result.deleted and result.object["metadata"]["deletionTimestamp"]
    assert await storage.revision() == before
    assert await widgets.get("ns", "w", VERSION) == created


async def test_dry_run_removal_of_the_last_finalizer_deletes_nothing(
        widgets: Store, storage: Storage) -> None:
    await widgets.create(CTX, VERSION, widget(finalizers=[KEEP]))
    marked = (await widgets.delete(CTX, "w", VERSION, NOW)).object
    before = await storage.revision()
    result = await widgets.update(DRY, "w", VERSION, change(
        lambda o: o["metadata"].pop("finalizers")))
    assert "finalizers" not in result.object["metadata"]
    assert await storage.revision() == before
    assert await widgets.get("ns", "w", VERSION) == marked


async def test_deletecollection_deletes_what_the_selectors_select(widgets: Store) -> None:
    for name, color, tier in (("a", "red", "gold"), ("b", "red", "silver"),
                              ("c", "blue", "gold"), ("d", "green", "gold")):
        await widgets.create(CTX, VERSION, widget(name, labels={"tier": tier}, color=color))
    await widgets.create(RequestContext(namespace="other", field_manager="test"), VERSION,
                         widget("a", labels={"tier": "gold"}, color="red"))
    selection = Selection(parse_label_selector("tier=gold"),
                          parse_field_selector("spec.color!=green"))
    listed = await widgets.delete_collection(CTX, VERSION, selection, NOW)
    assert listed["kind"] == "WidgetList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "c"]
    assert await names(widgets) == ["b", "d"]
    assert await names(widgets, "other") == ["a"]  # another namespace is not touched


async def test_deletecollection_marks_finalized_objects_and_dry_run_keeps_all(
        widgets: Store, storage: Storage) -> None:
    await widgets.create(CTX, VERSION, widget("a"))
    await widgets.create(CTX, VERSION, widget("b", finalizers=[KEEP]))
    before = await storage.revision()
    dry = await widgets.delete_collection(DRY, VERSION, Selection(), NOW)
    assert sorted(i["metadata"]["name"] for i in dry["items"]) == ["a", "b"]
    assert await storage.revision() == before
    listed = await widgets.delete_collection(CTX, VERSION, Selection(), NOW)
    by_name = {i["metadata"]["name"]: i for i in listed["items"]}
    assert set(by_name) == {"a", "b"}
    assert by_name["b"]["metadata"]["deletionTimestamp"]
    assert await names(widgets) == ["b"]


async def test_deletecollection_skips_what_was_deleted_meanwhile(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget("a"))
    await widgets.create(CTX, VERSION, widget("b"))

    async def race(obj: Object) -> None:
        # while "a" is being deleted, another client deletes "b"
        if obj["metadata"]["name"] == "a":
            await widgets.delete(CTX, "b", VERSION, NOW)

    listed = await widgets.delete_collection(CTX, VERSION, Selection(), NOW, race)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a"]
    assert await names(widgets) == []
