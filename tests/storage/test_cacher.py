"""The watch cache (modelled on k8s.io/apiserver pkg/storage/cacher's tests and
pkg/storage/testing/watcher_tests.go): priming, fresh reads, watches served from memory exactly
once and in order, selector transitions, watch-list and bookmarks, compaction; each on a real
etcd and on the memory store (the `store` fixture), which proves the cache needs nothing but
storage.Interface. Then, on etcd processes of their own: etcd restarts, and one etcd watch
fanned out to a thousand watchers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import pytest_asyncio

from kext.storage.cacher import Cacher
from kext.storage.errors import (
    ExpiredError,
    KeyNotFoundError,
    StorageError,
    TooLargeResourceVersionError,
    UnavailableError,
)
from kext.storage.etcd3 import Etcd3Store, connect
from kext.storage.interface import (
    INITIAL_EVENTS_END_ANNOTATION,
    Interface,
    ListOptions,
    Object,
    Predicate,
    UpdateFunc,
    WatchEvent,
    WatchOptions,
    WatchProgress,
)
from kext.storage.settings import EtcdSettings
from tests.etcd import EtcdServer, until
from tests.storage.conftest import ContractStore
from tests.storage.memory import MemoryStore

pytestmark = pytest.mark.asyncio


def widget(name: str, **spec: object) -> Object:
    return {"metadata": {"name": name}, "spec": dict(spec)}


def set_spec(**spec: object) -> UpdateFunc:
    async def update(obj: Object | None) -> Object:
        assert obj is not None
        return {**obj, "spec": {**obj["spec"], **spec}}

    return update


def rv(obj: Object) -> int:
    return int(obj["metadata"]["resourceVersion"])


def color(wanted: str) -> Predicate:
    def predicate(obj: Object) -> bool:
        return bool(obj["spec"].get("color") == wanted)

    return predicate


def summary(events: list[WatchEvent]) -> list[tuple[str, str, int]]:
    return [(e.type, e.key.rsplit("/", 1)[-1], e.revision) for e in events]


async def next_event(watch: AsyncIterator[WatchEvent], timeout: float = 20.0) -> WatchEvent:
    return await asyncio.wait_for(anext(watch), timeout)


async def take(watch: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    return [await next_event(watch) for _ in range(n)]


async def create_eventually(store: ContractStore, key: str, obj: Object) -> Object:
    """Create obj, retrying while etcd is (still) unavailable."""
    created: list[Object] = []

    async def done() -> bool:
        try:
            created.append(await store.create(key, obj))
        except UnavailableError:
            return False
        return True

    await until(done, what=f"etcd to accept the create of {key}")
    return created[0]


async def etcd_watchers(server: EtcdServer) -> int:
    """How many watches etcd serves (its watcher gauge)."""
    metrics = await asyncio.to_thread(server.metrics)
    match = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", metrics, re.M)
    assert match, "etcd exposes no watcher gauge"
    return int(float(match.group(1)))


@pytest_asyncio.fixture
async def make_cacher() -> AsyncIterator[Callable[..., Cacher]]:
    """make_cacher(store, root, **options) -> a Cacher (start it yourself); stopped after."""
    made: list[Cacher] = []

    def make(store: ContractStore, root: str, **options: Any) -> Cacher:
        options.setdefault("block_timeout", 1.0)
        cacher = Cacher(store, root, **options)
        made.append(cacher)
        return cacher

    yield make
    for cacher in made:
        await cacher.stop()


async def started(cacher: Cacher) -> Cacher:
    await cacher.start()
    await cacher.wait_ready(20)
    return cacher


async def caught_up(cacher: Cacher, revision: int) -> None:
    async def reached() -> bool:
        return cacher.last_sync_resource_version >= revision

    await until(reached, what=f"the cache to reach revision {revision}")


# -- priming and reads


async def test_primes_then_serves_lists_from_memory(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    objects = [await store.create(key_prefix + f"ns{i % 2}/w{i}", widget(f"w{i}"))
               for i in range(5)]
    cacher = make_cacher(store, key_prefix)
    interface: Interface = cacher  # the registry sees the same interface as etcd's
    assert not cacher.ready
    await started(cacher)
    assert interface is cacher and cacher.ready
    assert cacher.object_count == 5
    assert cacher.etcd_watch_count == 1
    assert cacher.last_sync_resource_version >= max(rv(o) for o in objects)

    listed = await cacher.list(key_prefix, ListOptions(resource_version="0"))
    from_etcd = await store.list(key_prefix, ListOptions())
    assert listed.items == from_etcd.items
    # Served from memory: the cache's own encodings of the objects, not new ones.
    again = await cacher.list(key_prefix, ListOptions(resource_version="0"))
    assert listed.encoded is not None and again.encoded is not None
    assert all(a is b for a, b in zip(listed.encoded, again.encoded, strict=True))
    assert [orjson.loads(e) for e in listed.encoded] == from_etcd.items

    namespace = await cacher.list(key_prefix + "ns1/", ListOptions(resource_version="0"))
    assert [o["metadata"]["name"] for o in namespace.items] == ["w1", "w3"]
    selected = await cacher.list(key_prefix, ListOptions(
        resource_version="0", predicate=lambda o: o["metadata"]["name"] in ("w0", "w4")))
    assert [o["metadata"]["name"] for o in selected.items] == ["w0", "w4"]

    await cacher.stop()
    assert not cacher.ready and cacher.etcd_watch_count == 0


async def test_consistent_reads_are_never_stale(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix))
    for i in range(3):
        written = await store.create(key_prefix + f"w{i}", widget(f"w{i}"))
        # Right after the write, before the cache may have seen it.
        result = await cacher.list(key_prefix, ListOptions())
        assert result.items[-1] == written
        assert int(result.resource_version) >= rv(written)
    assert cacher.consistent_reads_from_cache == 3

    # A write elsewhere moves etcd's revision but not the cache's: the cache proves it is
    # current instead of waiting for an event that will never come.
    elsewhere = await store.create(key_prefix[:-1] + "-other/x", widget("x"))
    result = await cacher.list(key_prefix, ListOptions())
    assert int(result.resource_version) >= rv(elsewhere)
    assert [o["metadata"]["name"] for o in result.items] == ["w0", "w1", "w2"]
    assert cacher.consistent_reads_from_cache == 4
    assert cacher.consistent_read_fallbacks == 0

    # Not older than a revision the cache has not seen yet.
    updated = await store.guaranteed_update(key_prefix + "w1", set_spec(size=2))
    got = await cacher.get(key_prefix + "w1", resource_version=str(rv(updated)))
    assert got == updated
    result = await cacher.list(key_prefix, ListOptions(
        resource_version=str(rv(updated)), resource_version_match="NotOlderThan"))
    assert result.items[1] == updated

    # resourceVersion "0" may be stale, but catches up.
    deleted = await store.delete(key_prefix + "w0")
    await caught_up(cacher, rv(deleted))
    result = await cacher.list(key_prefix, ListOptions(resource_version="0"))
    assert [o["metadata"]["name"] for o in result.items] == ["w1", "w2"]
    with pytest.raises(KeyNotFoundError):
        await cacher.get(key_prefix + "w0", resource_version="0")
    assert await cacher.get(key_prefix + "w2", resource_version="0") == result.items[1]


async def test_consistent_gets_from_the_cache_share_etcd_revision_reads(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    """A get without resourceVersion is served from the cache once it holds etcd's current
    state, never a state older than the get; concurrent ones share etcd round trips."""
    cacher = await started(make_cacher(store, key_prefix))
    reads = 0
    current_revision = store.current_revision

    async def counted() -> int:
        nonlocal reads
        reads += 1
        return await current_revision()

    store.current_revision = counted  # type: ignore[method-assign]
    written = await store.create(key_prefix + "w", widget("w"))
    assert await cacher.get(key_prefix + "w") == written
    for i in range(3):
        written = await store.guaranteed_update(key_prefix + "w", set_spec(size=i))
        # right after the write, before the cache may have seen it
        assert await cacher.get(key_prefix + "w") == written
    reads = 0
    got = await asyncio.gather(*(cacher.get(key_prefix + "w") for _ in range(50)))
    assert all(g == written for g in got)
    assert 1 <= reads <= 2  # one read in flight, one after it for those who came meanwhile
    with pytest.raises(KeyNotFoundError):
        await cacher.get(key_prefix + "absent")


async def test_reads_ahead_of_etcd_are_too_large(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix, block_timeout=0.3))
    await store.create(key_prefix + "a", widget("a"))
    future = str(await store.current_revision() + 1000)
    with pytest.raises(TooLargeResourceVersionError):
        await cacher.get(key_prefix + "a", resource_version=future)
    with pytest.raises(TooLargeResourceVersionError):
        await cacher.list(key_prefix, ListOptions(resource_version=future,
                                                  resource_version_match="NotOlderThan"))


async def test_pages_from_the_cache_continue_in_etcd(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    for i in range(5):
        last = await store.create(key_prefix + f"w{i}", widget(f"w{i}"))
    cacher = await started(make_cacher(store, key_prefix))
    options = ListOptions(resource_version=str(rv(last)), resource_version_match="NotOlderThan",
                          limit=2)
    first = await cacher.list(key_prefix, options)
    assert [o["metadata"]["name"] for o in first.items] == ["w0", "w1"]
    assert first.remaining_item_count == 3 and first.continue_token
    rest = await cacher.list(key_prefix, ListOptions(continue_token=first.continue_token))
    assert [o["metadata"]["name"] for o in rest.items] == ["w2", "w3", "w4"]
    assert rest.resource_version == first.resource_version
    # With resourceVersion "0" the limit is ignored, as kube-apiserver's cache does.
    everything = await cacher.list(key_prefix, ListOptions(resource_version="0", limit=2))
    assert len(everything.items) == 5 and not everything.continue_token


async def test_pages_come_from_the_cache_at_the_first_pages_revision(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    """As kube 1.34's snapshots: a consistent list in pages is served from the cache, every
    page showing the state at the first page's revision, whatever changed in between."""
    for i in range(6):
        await store.create(key_prefix + f"w{i}", widget(f"w{i}", size=0))
    cacher = await started(make_cacher(store, key_prefix))
    reads = 0
    list_from_storage = store.list

    async def counted(prefix: str, options: ListOptions) -> Any:
        nonlocal reads
        reads += 1
        return await list_from_storage(prefix, options)

    store.list = counted  # type: ignore[method-assign]
    first = await cacher.list(key_prefix, ListOptions(limit=2))
    assert [o["metadata"]["name"] for o in first.items] == ["w0", "w1"]
    assert first.remaining_item_count == 4
    # between the pages: one changed, one deleted, one created (and seen by the cache)
    await store.guaranteed_update(key_prefix + "w2", set_spec(size=9))
    await store.delete(key_prefix + "w3")
    late = await store.create(key_prefix + "w25", widget("w25"))
    await caught_up(cacher, rv(late))
    second = await cacher.list(key_prefix, ListOptions(limit=2,
                                                       continue_token=first.continue_token))
    assert [(o["metadata"]["name"], o["spec"]["size"]) for o in second.items] == [
        ("w2", 0), ("w3", 0)]
    assert second.resource_version == first.resource_version
    assert second.remaining_item_count == 2
    third = await cacher.list(key_prefix, ListOptions(limit=2,
                                                      continue_token=second.continue_token))
    assert [o["metadata"]["name"] for o in third.items] == ["w4", "w5"]
    assert not third.continue_token
    # the same pages as etcd gives at that revision
    exact = await list_from_storage(key_prefix, ListOptions(
        resource_version=first.resource_version, resource_version_match="Exact"))
    assert [o for p in (first, second, third) for o in p.items] == list(exact.items)
    assert reads == 0
    # the state now, and an exact revision from the cache too
    now = await cacher.list(key_prefix, ListOptions())
    assert [o["metadata"]["name"] for o in now.items] == ["w0", "w1", "w2", "w25", "w4", "w5"]
    at = await cacher.list(key_prefix, ListOptions(resource_version=first.resource_version,
                                                   resource_version_match="Exact"))
    assert list(at.items) == list(exact.items) and reads == 0


async def test_pages_from_the_cache_after_writes_elsewhere(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    """A write outside the resource moves etcd's revision but not the cache's: the first
    page's revision is etcd's (the cache proved itself current there), and the next pages
    still come from the cache."""
    for i in range(4):
        await store.create(key_prefix + f"w{i}", widget(f"w{i}"))
    cacher = await started(make_cacher(store, key_prefix))
    elsewhere = await store.create(key_prefix[:-1] + "-other/x", widget("x"))
    reads = 0
    list_from_storage = store.list

    async def counted(prefix: str, options: ListOptions) -> Any:
        nonlocal reads
        reads += 1
        return await list_from_storage(prefix, options)

    store.list = counted  # type: ignore[method-assign]
    first = await cacher.list(key_prefix, ListOptions(limit=2))
    assert int(first.resource_version) >= rv(elsewhere)
    rest = await cacher.list(key_prefix, ListOptions(limit=2,
                                                     continue_token=first.continue_token))
    assert [o["metadata"]["name"] for o in [*first.items, *rest.items]] == [
        "w0", "w1", "w2", "w3"]
    assert rest.resource_version == first.resource_version and not rest.continue_token
    assert reads == 0


# -- watch


async def test_watch_from_zero_lists_then_follows(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    a = await store.create(key_prefix + "a", widget("a"))
    b = await store.create(key_prefix + "b", widget("b"))
    cacher = await started(make_cacher(store, key_prefix))
    async with contextlib.aclosing(cacher.watch(key_prefix, resource_version=0)) as watch:
        initial = await take(watch, 2)
        assert [(e.type, e.object) for e in initial] == [("ADDED", a), ("ADDED", b)]
        c = await store.create(key_prefix + "c", widget("c"))
        a2 = await store.guaranteed_update(key_prefix + "a", set_spec(size=2))
        assert summary(await take(watch, 2)) == [("ADDED", "c", rv(c)), ("MODIFIED", "a", rv(a2))]
        assert cacher.watcher_count == 1
    await until(lambda: _true(cacher.watcher_count == 0), what="the watcher to go")


async def _true(value: bool) -> bool:
    return value


async def test_watch_exactly_once_in_order_under_concurrent_writers(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix))
    start = cacher.last_sync_resource_version
    written: list[tuple[str, Object]] = []

    async def writer(n: int) -> None:
        key = key_prefix + f"w{n}"
        written.append(("ADDED", await store.create(key, widget(f"w{n}", step=0))))
        for step in range(1, 10):
            written.append(("MODIFIED", await store.guaranteed_update(key, set_spec(step=step))))

    live = cacher.watch(key_prefix, resource_version=start)
    first = asyncio.ensure_future(next_event(live))  # registered before any write
    await until(lambda: _true(cacher.watcher_count == 1), what="the watch to register")
    writers = asyncio.gather(*(writer(n) for n in range(5)))
    # Joins mid-burst: part replayed from the window, part live.
    await caught_up(cacher, start + 15)
    late = cacher.watch(key_prefix, resource_version=start)
    late_events = await take(late, 50)
    await writers
    live_events = [await first, *await take(live, 49)]
    await live.aclose()
    await late.aclose()

    written.sort(key=lambda w: rv(w[1]))
    expected = [(t, o["metadata"]["name"], rv(o)) for t, o in written]
    assert summary(live_events) == expected
    assert summary(late_events) == expected
    assert [e.object for e in live_events] == [o for _, o in written]
    # One event object, shared by every watcher.
    assert all(a is b for a, b in zip(live_events, late_events, strict=True))


async def test_watch_older_than_the_window_is_expired(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix, window=4))
    start = cacher.last_sync_resource_version
    writes = [await store.create(key_prefix + f"w{i}", widget(f"w{i}")) for i in range(10)]
    await caught_up(cacher, rv(writes[-1]))
    with pytest.raises(ExpiredError, match=rf"too old resource version: {start} \("):
        await next_event(cacher.watch(key_prefix, resource_version=start))
    # The oldest revision the window still covers.
    async with contextlib.aclosing(
        cacher.watch(key_prefix, resource_version=rv(writes[5]))
    ) as watch:
        assert [e.object for e in await take(watch, 4)] == writes[6:]


async def test_watch_ahead_of_the_cache(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix, block_timeout=0.3))
    future = await store.current_revision() + 1000
    with pytest.raises(TooLargeResourceVersionError):
        await next_event(cacher.watch(key_prefix, resource_version=future))
    # etcd has reached it (a write elsewhere) but the cache has not: fine, changes after it.
    elsewhere = await store.create(key_prefix[:-1] + "-other/x", widget("x"))
    async with contextlib.aclosing(
        cacher.watch(key_prefix, resource_version=rv(elsewhere))
    ) as watch:
        pending = asyncio.ensure_future(next_event(watch))
        await until(lambda: _true(cacher.watcher_count == 1), what="the watch to register")
        created = await store.create(key_prefix + "a", widget("a"))
        event = await pending
    assert (event.type, event.object) == ("ADDED", created)


async def test_selector_transitions(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    """An object entering the selection is ADDED, leaving it DELETED (cacheWatcher)."""
    cacher = await started(make_cacher(store, key_prefix))
    start = cacher.last_sync_resource_version
    blue_a = cacher.watch(key_prefix, resource_version=start, predicate=color("blue"))
    blue_b = cacher.watch(key_prefix, resource_version=start, predicate=color("blue"))
    everything = cacher.watch(key_prefix, resource_version=start)
    pending = [asyncio.ensure_future(next_event(w)) for w in (blue_a, blue_b, everything)]
    await until(lambda: _true(cacher.watcher_count == 3), what="the watches to register")

    await store.create(key_prefix + "a", widget("a", color="red"))
    await store.guaranteed_update(key_prefix + "a", set_spec(color="blue"))
    await store.guaranteed_update(key_prefix + "a", set_spec(color="blue", size=1))
    await store.guaranteed_update(key_prefix + "a", set_spec(color="red"))
    await store.delete(key_prefix + "a")
    await store.create(key_prefix + "c", widget("c", color="blue"))
    await store.delete(key_prefix + "c")

    a_events = [await pending[0], *await take(blue_a, 4)]
    b_events = [await pending[1], *await take(blue_b, 4)]
    all_events = [await pending[2], *await take(everything, 6)]
    for watch in (blue_a, blue_b, everything):
        await watch.aclose()

    assert [(e.type, e.key.rsplit("/", 1)[-1]) for e in a_events] == [
        ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a"), ("ADDED", "c"), ("DELETED", "c"),
    ]
    assert [e.type for e in all_events] == [
        "ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED", "ADDED", "DELETED",
    ]
    # Leaving the selection: DELETED with the last selected state, at the change's revision.
    left = a_events[2]
    assert left.object["spec"] == {"color": "blue", "size": 1}
    assert rv(left.object) == left.revision == all_events[3].revision
    # Unchanged events are the same object for everyone, and so are transitions.
    assert all(a is b for a, b in zip(a_events, b_events, strict=True))
    assert a_events[1] is all_events[2] and a_events[3] is all_events[5]
    assert a_events[0] is not all_events[1] and a_events[0].object is all_events[1].object

    # The same transitions when replayed from the window.
    async with contextlib.aclosing(
        cacher.watch(key_prefix, resource_version=start, predicate=color("blue"))
    ) as replay:
        assert summary(await take(replay, 5)) == summary(a_events)


async def test_watch_of_one_key(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    """recursive=False: the one key, not its siblings that share the name as a prefix."""
    a = await store.create(key_prefix + "ns/a", widget("a"))
    await store.create(key_prefix + "ns/ab", widget("ab"))
    cacher = await started(make_cacher(store, key_prefix))
    start = cacher.last_sync_resource_version
    one = WatchOptions(recursive=False)
    async with contextlib.aclosing(
        cacher.watch(key_prefix + "ns/a", resource_version=0, options=one)
    ) as watch:
        assert [(e.type, e.object) for e in await take(watch, 1)] == [("ADDED", a)]
        await store.guaranteed_update(key_prefix + "ns/ab", set_spec(size=1))
        a2 = await store.guaranteed_update(key_prefix + "ns/a", set_spec(size=2))
        assert summary(await take(watch, 1)) == [("MODIFIED", "a", rv(a2))]
    # From the window: the same.
    await caught_up(cacher, rv(a2))
    async with contextlib.aclosing(
        cacher.watch(key_prefix + "ns/a", resource_version=start, options=one)
    ) as watch:
        assert summary(await take(watch, 1)) == [("MODIFIED", "a", rv(a2))]
        deleted = await store.delete(key_prefix + "ns/a")
        assert summary(await take(watch, 1)) == [("DELETED", "a", rv(deleted))]


async def test_send_initial_events_then_bookmark(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix))
    a = await store.create(key_prefix + "a", widget("a", color="blue"))
    await store.create(key_prefix + "b", widget("b", color="red"))
    c = await store.create(key_prefix + "c", widget("c", color="blue"))

    # resourceVersion "" (None): the state at etcd's current revision, though just written.
    watch = cacher.watch(key_prefix, resource_version=None, predicate=color("blue"),
                         options=WatchOptions(send_initial_events=True, allow_bookmarks=True))
    async with contextlib.aclosing(watch):
        added = await take(watch, 2)
        assert [(e.type, e.object) for e in added] == [("ADDED", a), ("ADDED", c)]
        bookmark = await next_event(watch)
        assert bookmark.type == "BOOKMARK"
        assert bookmark.object["metadata"]["annotations"] == {
            INITIAL_EVENTS_END_ANNOTATION: "true"}
        assert bookmark.revision == rv(bookmark.object) >= rv(c)
        d = await store.create(key_prefix + "d", widget("d", color="blue"))
        assert (await next_event(watch)).object == d

    # NotOlderThan N, with N just written; no end bookmark without allowWatchBookmarks.
    e = await store.create(key_prefix + "e", widget("e", color="blue"))
    watch = cacher.watch(key_prefix, resource_version=rv(e),
                         options=WatchOptions(send_initial_events=True))
    async with contextlib.aclosing(watch):
        initial = await take(watch, 5)
        assert [x.object["metadata"]["name"] for x in initial] == ["a", "b", "c", "d", "e"]
        f = await store.create(key_prefix + "f", widget("f"))
        assert (await next_event(watch)).object == f


async def test_bookmarks_when_idle(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix, bookmark_interval=0.05))
    start = cacher.last_sync_resource_version

    def wanted(obj: Object) -> bool:
        return bool(obj["metadata"]["name"] == "wanted")

    with_bookmarks = cacher.watch(key_prefix, resource_version=start, predicate=wanted,
                                  options=WatchOptions(allow_bookmarks=True))
    without = cacher.watch(key_prefix, resource_version=start, predicate=wanted)
    pending = asyncio.ensure_future(next_event(without))
    # Nothing this watcher selects changes, but the resource's revision moves.
    other = await store.create(key_prefix + "other", widget("other"))
    bookmark = await next_event(with_bookmarks)
    while bookmark.revision < rv(other):  # bookmarks from before the create
        assert bookmark.type == "BOOKMARK"
        bookmark = await next_event(with_bookmarks)
    assert bookmark.type == "BOOKMARK"
    assert bookmark.object == {"metadata": {"resourceVersion": str(bookmark.revision)}}

    created = await store.create(key_prefix + "wanted", widget("wanted"))
    event = await next_event(with_bookmarks)
    while event.type == "BOOKMARK":
        event = await next_event(with_bookmarks)
    assert (event.type, event.object) == ("ADDED", created)
    # A watcher that did not ask for bookmarks gets none.
    assert (await pending).object == created
    await with_bookmarks.aclose()
    await without.aclose()


class WithoutProgressNotify:
    """A store (mixed into Etcd3Store or MemoryStore) whose watches send no progress
    notifications, as etcd 3.4's may not; it counts the cache's watch_progress reads."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.progress_reads = 0

    def watch(
        self,
        key_prefix: str,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        options = dataclasses.replace(options or WatchOptions(), progress_notify=False)
        return super().watch(  # type: ignore[misc,no-any-return]
            key_prefix, resource_version=resource_version, predicate=predicate, options=options
        )

    async def watch_progress(self, key_prefix: str, *, since: int) -> WatchProgress:
        self.progress_reads += 1
        return await super().watch_progress(key_prefix, since=since)  # type: ignore[misc]


class QuietEtcd3Store(WithoutProgressNotify, Etcd3Store):
    pass


class QuietMemoryStore(WithoutProgressNotify, MemoryStore):
    pass


@pytest.fixture(params=["etcd", "memory"])
def quiet_store(request: pytest.FixtureRequest) -> QuietEtcd3Store | QuietMemoryStore:
    """An Etcd3Store on the session etcd, or a MemoryStore, without progress notifications."""
    if request.param == "memory":
        return QuietMemoryStore()
    return QuietEtcd3Store(request.getfixturevalue("etcd_client"))


async def test_idle_watchers_get_a_bookmark_every_interval(
    quiet_store: QuietEtcd3Store | QuietMemoryStore, key_prefix: str,
    make_cacher: Callable[..., Cacher],
) -> None:
    """As kube-apiserver's cacher: a watcher that allows bookmarks gets one every interval
    though nothing changes, at the cache's revision, which follows etcd's even when only
    keys elsewhere are written (proven with one watch_progress read per interval, whatever
    the number of watchers)."""
    store, interval = quiet_store, 0.2
    await store.create(key_prefix + "a", widget("a"))
    cacher = await started(make_cacher(store, key_prefix, bookmark_interval=interval))
    start = cacher.last_sync_resource_version
    loop = asyncio.get_running_loop()
    began = loop.time()
    watchers = [cacher.watch(key_prefix, resource_version=None,
                             options=WatchOptions(allow_bookmarks=True)) for _ in range(3)]
    without = cacher.watch(key_prefix, resource_version=None)
    for watch in [*watchers, without]:
        assert (await next_event(watch)).type == "ADDED"  # a, the current state
    pending = asyncio.ensure_future(anext(without))

    # Nothing at all is written: a bookmark anyway, at the revision the watch started at.
    for watch in watchers:
        bookmark = await next_event(watch, timeout=interval + 3)
        assert (bookmark.type, bookmark.revision) == ("BOOKMARK", start)
        assert bookmark.object == {"metadata": {"resourceVersion": str(start)}}

    # Only keys of another resource are written: bookmarks move on with etcd's revision.
    elsewhere = await store.create(f"/kext-test-elsewhere/{key_prefix.strip('/')}/x",
                                   widget("x"))
    for watch in watchers:
        bookmark = await next_event(watch, timeout=interval + 3)
        while bookmark.revision < rv(elsewhere):
            assert bookmark.type == "BOOKMARK"
            bookmark = await next_event(watch, timeout=interval + 3)
        assert bookmark.type == "BOOKMARK"
    elapsed = loop.time() - began
    assert 1 <= store.progress_reads <= elapsed / interval + 1
    assert not pending.done()  # a watcher that did not allow bookmarks got none

    # The bookmark's revision is one to resume from: nothing in between is skipped.
    resumed = cacher.watch(key_prefix, resource_version=bookmark.revision)
    b = await store.create(key_prefix + "b", widget("b"))
    assert (await next_event(resumed)).object == b
    assert (await pending).object == b
    for watch in [*watchers, without, resumed]:
        await watch.aclose()


# -- recovery


class Gated:
    """A store (mixed into Etcd3Store or MemoryStore) whose watches the test can cut off and
    reconnect (from the last revision they delivered), so that a compaction can overtake
    them."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.connected = asyncio.Event()
        self.connected.set()
        self.cut = asyncio.Event()
        self.idle = asyncio.Event()  # set while a watch waits to be reconnected

    def disconnect(self) -> None:
        self.connected.clear()
        self.cut.set()

    def reconnect(self) -> None:
        self.cut.clear()
        self.connected.set()

    async def watch(
        self,
        key_prefix: str,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        last = resource_version
        while True:
            if not self.connected.is_set():
                self.idle.set()
                await self.connected.wait()
                self.idle.clear()
            events = super().watch(  # type: ignore[misc]
                key_prefix, resource_version=last, predicate=predicate, options=options
            )
            try:
                while True:
                    following = asyncio.ensure_future(anext(events))
                    cut = asyncio.ensure_future(self.cut.wait())
                    try:
                        await asyncio.wait({following, cut}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        cut.cancel()
                        if not following.done():
                            following.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await following
                    if following.cancelled():
                        break
                    event = following.result()
                    last = event.revision
                    yield event
            finally:
                await events.aclose()


class GatedEtcd3Store(Gated, Etcd3Store):
    pass


class GatedMemoryStore(Gated, MemoryStore):
    pass


@pytest.fixture(params=["etcd", "memory"])
def gated_store(request: pytest.FixtureRequest) -> GatedEtcd3Store | GatedMemoryStore:
    """A gated Etcd3Store on the session etcd, or a gated MemoryStore."""
    if request.param == "memory":
        return GatedMemoryStore()
    return GatedEtcd3Store(request.getfixturevalue("etcd_client"))


async def test_compaction_past_the_cache_relists_and_expires_watchers(
    gated_store: GatedEtcd3Store | GatedMemoryStore, key_prefix: str,
    make_cacher: Callable[..., Cacher],
) -> None:
    store = gated_store
    cacher = await started(make_cacher(store, key_prefix))
    start = cacher.last_sync_resource_version
    watch = cacher.watch(key_prefix, resource_version=start)
    a = await store.create(key_prefix + "a", widget("a"))
    assert (await next_event(watch)).object == a

    store.disconnect()  # the cache's etcd watch is cut off...
    await asyncio.wait_for(store.idle.wait(), 20)
    b = await store.create(key_prefix + "b", widget("b"))
    await store.delete(key_prefix + "a")
    await store.compact(await store.current_revision())  # ...and compaction passes it
    store.reconnect()

    with pytest.raises(ExpiredError, match="too old resource version"):
        await next_event(watch)
    await cacher.wait_ready(20)
    await caught_up(cacher, rv(b))
    result = await cacher.list(key_prefix, ListOptions(resource_version="0"))
    assert result.items == [b]
    assert cacher.etcd_watch_count == 1
    # Resuming from before the relist is too old; from the list's revision works.
    with pytest.raises(ExpiredError):
        await next_event(cacher.watch(key_prefix, resource_version=rv(a)))
    async with contextlib.aclosing(
        cacher.watch(key_prefix, resource_version=int(result.resource_version))
    ) as watch:
        c = await store.create(key_prefix + "c", widget("c"))
        assert (await next_event(watch)).object == c


async def test_etcd_restart_loses_nothing(
    make_etcd: Callable[..., EtcdServer], key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    server = make_etcd()
    client = await connect(EtcdSettings(endpoints=(server.endpoint,), request_timeout=2.0))
    store = Etcd3Store(client)
    try:
        cacher = await started(make_cacher(store, key_prefix))
        start = cacher.last_sync_resource_version
        writes = [await store.create(key_prefix + f"w{i}", widget(f"w{i}")) for i in range(3)]
        async with contextlib.aclosing(cacher.watch(key_prefix, resource_version=start)) as watch:
            received = await take(watch, 1)  # two more written, not yet consumed
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            for i in range(3, 6):
                writes.append(await create_eventually(store, key_prefix + f"w{i}", widget(f"w{i}")))
            received += await take(watch, 5)
        assert [e.object for e in received] == writes
        assert [e.type for e in received] == ["ADDED"] * 6
        assert cacher.ready and cacher.etcd_watch_count == 1
        result = await cacher.list(key_prefix, ListOptions(resource_version="0"))
        assert result.items == writes
    finally:
        await client.close()


# -- fan-out


async def test_one_etcd_watch_for_a_thousand_watchers(
    make_etcd: Callable[..., EtcdServer], key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    """1,000 watchers all get a burst of 50 writes through one etcd watch; a watcher that
    never reads is cut off without holding anyone up."""
    server = make_etcd()
    client = await connect(EtcdSettings(endpoints=(server.endpoint,)))
    store = Etcd3Store(client)
    try:
        seed = await store.create(key_prefix + "seed", widget("seed"))
        cacher = await started(make_cacher(store, key_prefix, watcher_queue=20))
        await until(lambda: _watching(server, 1), what="the cache's etcd watch")

        stalled = cacher.watch(key_prefix, resource_version=0)
        assert (await next_event(stalled)).object == seed  # then never read again
        start = cacher.last_sync_resource_version

        async def consume() -> list[WatchEvent]:
            events: list[WatchEvent] = []
            async with contextlib.aclosing(
                cacher.watch(key_prefix, resource_version=start)
            ) as watch:
                async for event in watch:
                    events.append(event)
                    if len(events) == 50:
                        break
            return events

        consumers = [asyncio.ensure_future(consume()) for _ in range(1000)]
        await until(lambda: _true(cacher.watcher_count == 1001), what="1,001 watchers")
        assert await etcd_watchers(server) == 1 and cacher.etcd_watch_count == 1

        writes = await asyncio.gather(
            *(store.create(key_prefix + f"w{i:02}", widget(f"w{i}")) for i in range(50))
        )
        results = await asyncio.wait_for(asyncio.gather(*consumers), 60)

        expected = sorted(rv(w) for w in writes)
        for events in results:
            assert [e.revision for e in events] == expected
            assert all(a is b for a, b in zip(events, results[0], strict=True))
        assert cacher.terminated_watchers == 1
        with pytest.raises(StopAsyncIteration):
            await next_event(stalled)  # its stream ended: the client would watch again
        assert await etcd_watchers(server) == 1
        await until(lambda: _true(cacher.watcher_count == 0), what="the watchers to go")
    finally:
        await client.close()


async def _watching(server: EtcdServer, n: int) -> bool:
    return await etcd_watchers(server) == n


async def test_a_failing_selector_ends_only_its_watch(
    store: ContractStore, key_prefix: str, make_cacher: Callable[..., Cacher]
) -> None:
    cacher = await started(make_cacher(store, key_prefix))
    start = cacher.last_sync_resource_version

    def broken(obj: Object) -> bool:
        return bool(obj["spec"]["missing"])

    failing = cacher.watch(key_prefix, resource_version=start, predicate=broken)
    pending = asyncio.ensure_future(next_event(failing))
    healthy = cacher.watch(key_prefix, resource_version=start)
    await until(lambda: _true(cacher.watcher_count == 1), what="the failing watch to register")
    created = await store.create(key_prefix + "a", widget("a"))
    with pytest.raises(StorageError, match="selector failed"):
        await pending
    assert (await next_event(healthy)).object == created
    assert cacher.ready
    # Stopping the cache ends the remaining watches cleanly.
    await cacher.stop()
    with pytest.raises(StopAsyncIteration):
        await next_event(healthy)
