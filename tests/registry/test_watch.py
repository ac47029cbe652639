"""Store.watch through the watch cache on a MemoryStore, as kext serves every watch: the
current state then every change, from a resourceVersion, selectors turning changes into
ADDED and DELETED, the watch-list protocol, and a revision the cache no longer has."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
import pytest_asyncio

from kext.api.selectors import parse_field_selector, parse_label_selector
from kext.registry.rest import RequestContext
from kext.registry.store import DeleteOptions, Selection, Store
from kext.storage.interface import INITIAL_EVENTS_END_ANNOTATION, WatchEvent
from tests.registry.conftest import Storage
from tests.registry.objects import VERSION, change, definition, refused, widget

pytestmark = pytest.mark.asyncio

CTX = RequestContext(namespace="ns", field_manager="test")
EVERYTHING = Selection()
Events = AsyncGenerator[WatchEvent, None]


@pytest_asyncio.fixture
async def widgets(cached_storage: Storage) -> AsyncIterator[Store]:
    yield await cached_storage.store(definition("widgets"))
    await cached_storage.close()


async def next_event(events: Events) -> WatchEvent:
    return await asyncio.wait_for(anext(events), 5)


async def seen(events: Events, count: int) -> list[tuple[str, str]]:
    """The next count events as (type, name)."""
    out: list[tuple[str, str]] = []
    for _ in range(count):
        event = await next_event(events)
        out.append((event.type, event.object["metadata"].get("name", "")))
    return out


async def test_a_watch_from_now_sends_the_state_then_every_change(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget("a"))
    async with contextlib.aclosing(widgets.watch("ns", None, EVERYTHING)) as events:
        assert await seen(events, 1) == [("ADDED", "a")]
        await widgets.create(CTX, VERSION, widget("b"))
        await widgets.update(CTX, "a", VERSION, change(lambda o: o["spec"].update(size=2)))
        await widgets.delete(CTX, "b", VERSION, DeleteOptions())
        assert await seen(events, 3) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


async def test_a_watch_from_a_resource_version_sends_what_came_after(widgets: Store) -> None:
    first = (await widgets.create(CTX, VERSION, widget("a"))).object
    await widgets.create(CTX, VERSION, widget("b"))
    rv = int(first["metadata"]["resourceVersion"])
    async with contextlib.aclosing(widgets.watch("ns", rv, EVERYTHING)) as events:
        event = await next_event(events)
        assert (event.type, event.object["metadata"]["name"]) == ("ADDED", "b")
        assert event.object["metadata"]["resourceVersion"] == str(event.revision)


async def test_a_watch_sees_its_namespace_only(widgets: Store) -> None:
    await widgets.create(RequestContext(namespace="other", field_manager="t"), VERSION,
                         widget("x"))
    await widgets.create(CTX, VERSION, widget("y"))
    async with contextlib.aclosing(widgets.watch("ns", None, EVERYTHING)) as mine, \
            contextlib.aclosing(widgets.watch("", None, EVERYTHING)) as everyone:
        assert await seen(mine, 1) == [("ADDED", "y")]
        assert await seen(everyone, 2) == [("ADDED", "y"), ("ADDED", "x")]  # in key order
        await widgets.create(RequestContext(namespace="other", field_manager="t"), VERSION,
                             widget("z"))
        await widgets.create(CTX, VERSION, widget("w"))
        assert await seen(mine, 1) == [("ADDED", "w")]
        assert await seen(everyone, 2) == [("ADDED", "z"), ("ADDED", "w")]


async def test_selectors_turn_changes_into_added_and_deleted(widgets: Store,
                                                             cached_storage: Storage) -> None:
    selection = Selection(parse_label_selector("tier=gold"),
                          parse_field_selector("spec.color=red"))
    start = await cached_storage.revision()
    await widgets.create(CTX, VERSION, widget("a", labels={"tier": "silver"}, color="red"))
    await widgets.update(CTX, "a", VERSION, change(
        lambda o: o["metadata"].update(labels={"tier": "gold"})))
    await widgets.update(CTX, "a", VERSION, change(lambda o: o["spec"].update(size=3)))
    await widgets.update(CTX, "a", VERSION, change(lambda o: o["spec"].update(color="blue")))
    await widgets.create(CTX, VERSION, widget("b", labels={"tier": "gold"}, color="blue"))
    async with contextlib.aclosing(widgets.watch("ns", start, selection)) as events:
        events_seen = [await next_event(events) for _ in range(3)]
    assert [e.type for e in events_seen] == ["ADDED", "MODIFIED", "DELETED"]
    assert events_seen[1].object["spec"]["size"] == 3
    # DELETED carries the last state that matched, at the revision of the change
    assert events_seen[2].object["spec"]["color"] == "red"
    assert events_seen[2].object["metadata"]["resourceVersion"] == str(events_seen[2].revision)


async def test_the_watch_list_protocol_ends_the_state_with_a_bookmark(widgets: Store) -> None:
    await widgets.create(CTX, VERSION, widget("a"))
    await widgets.create(CTX, VERSION, widget("b"))
    watch = widgets.watch("ns", None, EVERYTHING, send_initial_events=True,
                          allow_bookmarks=True)
    async with contextlib.aclosing(watch) as events:
        assert await seen(events, 2) == [("ADDED", "a"), ("ADDED", "b")]
        bookmark = await next_event(events)
        assert bookmark.type == "BOOKMARK"
        assert bookmark.object["metadata"]["annotations"] == {
            INITIAL_EVENTS_END_ANNOTATION: "true"}
        await widgets.create(CTX, VERSION, widget("c"))
        assert await seen(events, 1) == [("ADDED", "c")]


async def test_a_revision_older_than_the_cache_is_410_expired(
        widgets: Store, cached_storage: Storage) -> None:
    first = (await widgets.create(CTX, VERSION, widget("a"))).object
    await widgets.create(CTX, VERSION, widget("b"))
    # a watch cache primed after those writes cannot replay from before them
    later = await cached_storage.store(definition("widgets"))
    rv = int(first["metadata"]["resourceVersion"])
    async with contextlib.aclosing(later.watch("ns", rv, EVERYTHING)) as events:
        error = await refused(next_event(events))
    assert (error.code, error.reason) == (410, "Expired")
    assert error.message.startswith(f"too old resource version: {rv} (")


async def test_a_revision_ahead_of_storage_is_504(cached_storage: Storage) -> None:
    widgets = await cached_storage.store(definition("widgets"), block_timeout=0.05)
    try:
        ahead = await cached_storage.revision() + 100
        async with contextlib.aclosing(widgets.watch("ns", ahead, EVERYTHING)) as events:
            error = await refused(next_event(events))
        assert (error.code, error.reason) == (504, "Timeout")
    finally:
        await cached_storage.close()
