"""Store.get and get_list in memory (a MemoryStore, and a watch cache on one): selectors,
namespaces, pages with continue tokens, and resourceVersion semantics with the Status a
client gets for a revision that is gone or not reached yet."""

from __future__ import annotations

from typing import Any

import pytest

from kext.api.selectors import parse_field_selector, parse_label_selector
from kext.registry.rest import RequestContext
from kext.registry.store import DeleteOptions, Selection, Store
from kext.storage.interface import ListOptions
from tests.registry.conftest import Storage
from tests.registry.objects import API_VERSION, VERSION, change, definition, refused, widget
from tests.storage.memory import MemoryStore

pytestmark = pytest.mark.asyncio

CTX = RequestContext(namespace="ns", field_manager="test")
EVERYTHING = Selection()


def names(listed: dict[str, Any]) -> list[str]:
    return [i["metadata"]["name"] for i in listed["items"]]


async def fill(widgets: Store) -> None:
    for name, color, tier in (("a", "red", "gold"), ("b", "blue", "silver"),
                              ("c", "red", "silver"), ("d", "green", "gold")):
        await widgets.create(CTX, VERSION, widget(name, labels={"tier": tier}, color=color))
    await widgets.create(RequestContext(namespace="other", field_manager="test"), VERSION,
                         widget("e", labels={"tier": "gold"}, color="red"))


@pytest.mark.parametrize(("labels", "fields", "expected"), [
    ("", "", ["a", "b", "c", "d"]),
    ("tier=gold", "", ["a", "d"]),
    ("tier!=gold", "", ["b", "c"]),
    ("tier in (gold,bronze)", "", ["a", "d"]),
    ("tier notin (gold)", "", ["b", "c"]),
    ("tier", "", ["a", "b", "c", "d"]),
    ("!tier", "", []),
    ("", "spec.color=red", ["a", "c"]),
    ("", "spec.color!=red", ["b", "d"]),
    ("", "metadata.name=b", ["b"]),
    ("", "metadata.namespace=ns", ["a", "b", "c", "d"]),
    ("tier=silver", "spec.color=red", ["c"]),
])
async def test_list_selects_by_labels_and_fields(widgets: Store, labels: str, fields: str,
                                                 expected: list[str]) -> None:
    await fill(widgets)
    selection = Selection(parse_label_selector(labels) if labels else None,
                          parse_field_selector(fields) if fields else None)
    listed = await widgets.get_list("ns", VERSION, selection, ListOptions())
    assert names(listed) == expected


async def test_a_list_is_a_kind_list_at_a_revision(widgets: Store, storage: Storage) -> None:
    await fill(widgets)
    listed = await widgets.get_list("ns", VERSION, EVERYTHING, ListOptions())
    assert (listed["apiVersion"], listed["kind"]) == (API_VERSION, "WidgetList")
    assert listed["metadata"] == {"resourceVersion": str(await storage.revision())}
    assert all(i["apiVersion"] == API_VERSION for i in listed["items"])


async def test_a_list_across_namespaces(widgets: Store) -> None:
    await fill(widgets)
    listed = await widgets.get_list("", VERSION, EVERYTHING, ListOptions())
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed["items"]] == [
        ("ns", "a"), ("ns", "b"), ("ns", "c"), ("ns", "d"), ("other", "e")]
    selected = await widgets.get_list("", VERSION, Selection(
        fields=parse_field_selector("metadata.namespace=other")), ListOptions())
    assert names(selected) == ["e"]


async def test_pages_are_one_consistent_list(widgets: Store) -> None:
    await fill(widgets)
    first = await widgets.get_list("ns", VERSION, EVERYTHING, ListOptions(limit=3))
    assert names(first) == ["a", "b", "c"]
    token = first["metadata"]["continue"]
    assert first["metadata"]["remainingItemCount"] == 1
    # a write between pages is not seen by the rest of the list
    await widgets.create(CTX, VERSION, widget("z"))
    await widgets.delete(CTX, "d", VERSION, DeleteOptions())
    rest = await widgets.get_list("ns", VERSION, EVERYTHING,
                                  ListOptions(limit=3, continue_token=token))
    assert names(rest) == ["d"]
    assert "continue" not in rest["metadata"] and "remainingItemCount" not in rest["metadata"]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_pages_with_a_selector_are_filled(widgets: Store) -> None:
    await fill(widgets)
    red_or_green = Selection(fields=parse_field_selector("spec.color!=blue"))
    first = await widgets.get_list("ns", VERSION, red_or_green, ListOptions(limit=2))
    assert names(first) == ["a", "c"]
    # with a selector kube cannot say how many remain
    assert "remainingItemCount" not in first["metadata"]
    rest = await widgets.get_list("ns", VERSION, red_or_green, ListOptions(
        limit=2, continue_token=first["metadata"]["continue"]))
    assert names(rest) == ["d"]


async def test_a_bad_continue_token_is_400(widgets: Store) -> None:
    error = await refused(widgets.get_list("ns", VERSION, EVERYTHING,
                                           ListOptions(limit=1, continue_token="garbage")))
    assert (error.code, error.reason) == (400, "BadRequest")


async def test_an_exact_list_shows_the_past(widgets: Store, storage: Storage) -> None:
    await widgets.create(CTX, VERSION, widget("a"))
    then = str(await storage.revision())
    await widgets.create(CTX, VERSION, widget("b"))
    past = await widgets.get_list("ns", VERSION, EVERYTHING, ListOptions(
        resource_version=then, resource_version_match="Exact"))
    assert names(past) == ["a"] and past["metadata"]["resourceVersion"] == then
    # not older than `then`: the cache may answer at `then` or later, saying which
    recent = await widgets.get_list("ns", VERSION, EVERYTHING, ListOptions(
        resource_version=then, resource_version_match="NotOlderThan"))
    at = int(recent["metadata"]["resourceVersion"])
    assert at >= int(then)
    assert names(recent) == (["a"] if at == int(then) else ["a", "b"])
    # a consistent list (no resourceVersion) is never stale
    latest = await widgets.get_list("ns", VERSION, EVERYTHING, ListOptions())
    assert names(latest) == ["a", "b"]


async def test_a_compacted_revision_is_410_expired(widgets: Store, storage: Storage) -> None:
    assert isinstance(storage.base, MemoryStore)
    await widgets.create(CTX, VERSION, widget("a"))
    then = str(await storage.revision())
    await widgets.update(CTX, "a", VERSION, change(lambda o: o["spec"].update(size=2)))
    await storage.base.compact(await storage.revision())
    error = await refused(widgets.get_list("ns", VERSION, EVERYTHING, ListOptions(
        resource_version=then, resource_version_match="Exact")))
    assert (error.code, error.reason) == (410, "Expired")
    assert error.message == "The resourceVersion for the provided list is too old."
    # a get is "not older than": the current object is newer than a compacted revision
    assert (await widgets.get("ns", "a", VERSION, then))["spec"]["size"] == 2


async def test_a_revision_not_reached_yet_is_504_with_retry_after(storage: Storage) -> None:
    widgets = await storage.store(definition("widgets"), block_timeout=0.05)
    ahead = str(await storage.revision() + 100)
    for call in (
        widgets.get_list("ns", VERSION, EVERYTHING, ListOptions(
            resource_version=ahead, resource_version_match="NotOlderThan")),
        widgets.get("ns", "w", VERSION, ahead),
    ):
        error = await refused(call)
        assert (error.code, error.reason) == (504, "Timeout")
        assert error.message == (
            f"Timeout: Too large resource version: {ahead}, current: {int(ahead) - 100}")
        assert error.retry_after_seconds == 1
        assert [(c.reason, c.message) for c in error.causes] == [
            ("ResourceVersionTooLarge", "Too large resource version")]


async def test_get_not_older_than_a_revision(widgets: Store, storage: Storage) -> None:
    created = (await widgets.create(CTX, VERSION, widget())).object
    rv = created["metadata"]["resourceVersion"]
    assert await widgets.get("ns", "w", VERSION, rv) == created
    assert await widgets.get("ns", "w", VERSION, "0") == created
    updated = await widgets.update(CTX, "w", VERSION, change(lambda o: o["spec"].update(size=5)))
    # not older than rv: the created object or a newer one (the cache may not have the update)
    got = await widgets.get("ns", "w", VERSION, rv)
    assert got in (created, updated.object)
    # a get without a resourceVersion is a consistent read: never stale
    assert await widgets.get("ns", "w", VERSION) == updated.object


async def test_the_cache_revision_is_the_watch_caches(widgets: Store, storage: Storage) -> None:
    await widgets.create(CTX, VERSION, widget())
    if storage.cached:
        await widgets.get_list("ns", VERSION, EVERYTHING, ListOptions())  # waits for the cache
        assert widgets.cache_revision == await storage.revision()
    else:
        assert widgets.cache_revision == 0
