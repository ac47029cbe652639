"""Watch (modelled on k8s.io/apiserver pkg/storage/testing/watcher_tests.go): every change
after a revision, in order, with the right types; selections; compaction; the watch-list
initial events; progress notifications; on a real etcd and on the memory store (the `store`
fixture). Then, on etcd processes of their own: cancellation in etcd, and no event lost or
repeated across an etcd restart or outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable

import pytest

from kext.storage.errors import ExpiredError, TooLargeResourceVersionError, UnavailableError
from kext.storage.etcd3 import Etcd3Store, connect
from kext.storage.interface import (
    INITIAL_EVENTS_END_ANNOTATION,
    Object,
    UpdateFunc,
    WatchEvent,
    WatchOptions,
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


async def next_event(watch: AsyncIterator[WatchEvent], timeout: float = 20.0) -> WatchEvent:
    return await asyncio.wait_for(anext(watch), timeout)


async def take(watch: AsyncIterator[WatchEvent], n: int) -> list[WatchEvent]:
    return [await next_event(watch) for _ in range(n)]


def summary(events: list[WatchEvent]) -> list[tuple[str, str, int]]:
    return [(e.type, e.key.rsplit("/", 1)[-1], e.revision) for e in events]


async def test_watch_from_resource_version(store: ContractStore, key_prefix: str) -> None:
    start = await store.current_revision()
    a1 = await store.create(key_prefix + "a", widget("a", size=1))
    a2 = await store.guaranteed_update(key_prefix + "a", set_spec(size=2))
    b1 = await store.create(key_prefix + "b", widget("b"))
    a_deleted = await store.delete(key_prefix + "a")

    async with contextlib.aclosing(store.watch(key_prefix, resource_version=start)) as watch:
        events = await take(watch, 4)
    assert summary(events) == [
        ("ADDED", "a", rv(a1)),
        ("MODIFIED", "a", rv(a2)),
        ("ADDED", "b", rv(b1)),
        ("DELETED", "a", rv(a_deleted)),
    ]
    assert [e.object for e in events] == [a1, a2, b1, a_deleted]
    assert [e.prev_object for e in events] == [None, a1, None, a2]
    assert events[0].key == key_prefix + "a"

    # From the middle: only what came after.
    async with contextlib.aclosing(store.watch(key_prefix, resource_version=rv(a2))) as watch:
        assert summary(await take(watch, 2)) == summary(events[2:])


async def test_watch_from_zero_sees_only_new_changes(store: ContractStore, key_prefix: str) -> None:
    await store.create(key_prefix + "old", widget("old"))
    received: list[WatchEvent] = []

    async def consume() -> None:
        async for event in store.watch(key_prefix, resource_version=0):
            received.append(event)

    consumer = asyncio.create_task(consume())
    try:
        # The watch starts at some moment after this: write until it sees a change.
        await store.create(key_prefix + "new", widget("new", n=0))
        n = 0

        async def seen() -> bool:
            nonlocal n
            if received:
                return True
            n += 1
            await store.guaranteed_update(key_prefix + "new", set_spec(n=n))
            return False

        await until(seen, what="the watch from 0 to deliver an event")
        last = await store.guaranteed_update(key_prefix + "new", set_spec(n="last"))

        async def got_last() -> bool:
            return received[-1].revision == rv(last)

        await until(got_last, what="the last update")
    finally:
        consumer.cancel()
    # Never the pre-existing object, and no gaps once started.
    assert {e.key for e in received} == {key_prefix + "new"}
    revisions = [e.revision for e in received]
    assert revisions == sorted(set(revisions))
    assert received[-1].object == last


async def test_deleted_event_carries_the_last_state(store: ContractStore, key_prefix: str) -> None:
    created = await store.create(key_prefix + "a", widget("a", size=1))
    updated = await store.guaranteed_update(key_prefix + "a", set_spec(size=2))
    deleted = await store.delete(key_prefix + "a")
    async with contextlib.aclosing(
        store.watch(key_prefix, resource_version=rv(updated))
    ) as watch:
        event = await next_event(watch)
    assert event.type == "DELETED"
    assert event.revision == rv(deleted)
    assert event.object == {**updated, "metadata": {**updated["metadata"],
                                                    "resourceVersion": str(rv(deleted))}}
    assert event.prev_object == updated
    assert rv(created) < rv(updated) < rv(deleted)


async def test_watch_with_predicate(store: ContractStore, key_prefix: str) -> None:
    """An object entering the selection is ADDED, leaving it DELETED (as kube-apiserver)."""
    start = await store.current_revision()
    await store.create(key_prefix + "a", widget("a", color="red"))
    await store.guaranteed_update(key_prefix + "a", set_spec(color="blue"))
    await store.guaranteed_update(key_prefix + "a", set_spec(color="blue", size=1))
    await store.guaranteed_update(key_prefix + "a", set_spec(color="red"))
    await store.create(key_prefix + "b", widget("b", color="red"))
    await store.delete(key_prefix + "a")
    await store.create(key_prefix + "c", widget("c", color="blue"))
    await store.delete(key_prefix + "c")

    def blue(obj: Object) -> bool:
        return bool(obj["spec"].get("color") == "blue")

    async with contextlib.aclosing(
        store.watch(key_prefix, resource_version=start, predicate=blue)
    ) as watch:
        events = await take(watch, 5)
    assert [(e.type, e.key.rsplit("/", 1)[-1]) for e in events] == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
        ("ADDED", "c"),
        ("DELETED", "c"),
    ]
    # Leaving the selection: DELETED with the last selected state, at this revision.
    assert events[2].object["spec"] == {"color": "blue", "size": 1}
    assert rv(events[2].object) == events[2].revision


async def test_watch_compacted_revision_is_expired(store: ContractStore, key_prefix: str) -> None:
    start = await store.current_revision()
    await store.create(key_prefix + "a", widget("a"))
    await store.guaranteed_update(key_prefix + "a", set_spec(size=1))
    await store.compact(await store.current_revision())
    with pytest.raises(ExpiredError):
        async with contextlib.aclosing(store.watch(key_prefix, resource_version=start)) as watch:
            await next_event(watch)


async def test_watch_of_one_key(store: ContractStore, key_prefix: str) -> None:
    start = await store.current_revision()
    await store.create(key_prefix + "ab", widget("ab"))
    a = await store.create(key_prefix + "a", widget("a"))
    watch = store.watch(key_prefix + "a", resource_version=start,
                        options=WatchOptions(recursive=False))
    async with contextlib.aclosing(watch):
        assert summary(await take(watch, 1)) == [("ADDED", "a", rv(a))]


async def watchers(server: EtcdServer) -> int:
    """How many watches etcd serves (its watcher gauge)."""
    metrics = await asyncio.to_thread(server.metrics)
    match = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", metrics, re.M)
    assert match, "etcd exposes no watcher gauge"
    return int(float(match.group(1)))


async def test_closing_the_watch_cancels_it_in_etcd(
    make_etcd: Callable[..., EtcdServer], key_prefix: str
) -> None:
    server = make_etcd()
    client = await connect(EtcdSettings(endpoints=(server.endpoint,)))
    store = Etcd3Store(client)
    try:
        baseline = await watchers(server)
        created = await store.create(key_prefix + "a", widget("a"))
        before = rv(created) - 1

        # aclose() on a watch waiting at an event.
        watch = store.watch(key_prefix, resource_version=before)
        assert (await next_event(watch)).type == "ADDED"
        await until(lambda: has_watchers(server, baseline + 1), what="the etcd watch")
        await watch.aclose()
        await until(lambda: has_watchers(server, baseline), what="the etcd watch to end")

        # Leaving `async for`.
        async for event in store.watch(key_prefix, resource_version=before):
            assert event.type == "ADDED"
            break
        await until(lambda: has_watchers(server, baseline), what="the etcd watch to end")

        # Cancelling the task that waits for the next event.
        async def consume() -> None:
            async for _ in store.watch(key_prefix, resource_version=0):
                pass

        consumer = asyncio.create_task(consume())
        await until(lambda: has_watchers(server, baseline + 1), what="the etcd watch")
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        await until(lambda: has_watchers(server, baseline), what="the etcd watch to end")
    finally:
        await client.close()


async def has_watchers(server: EtcdServer, n: int) -> bool:
    return await watchers(server) == n


@pytest.mark.parametrize("backend", ["etcd", "memory"])
async def test_progress_notifications_are_bookmarks(
    backend: str, request: pytest.FixtureRequest, key_prefix: str
) -> None:
    """A write elsewhere moves the revision without an event under the prefix: progress
    notifications tell the watcher, as BOOKMARKs (what the watch cache follows)."""
    store: ContractStore
    if backend == "memory":
        store, client = MemoryStore(), None
    else:
        make_etcd = request.getfixturevalue("make_etcd")
        server = make_etcd(extra=("--experimental-watch-progress-notify-interval", "100ms"))
        client = await connect(EtcdSettings(endpoints=(server.endpoint,)))
        store = Etcd3Store(client)
    try:
        created = await store.create(key_prefix + "a", widget("a"))
        other = await store.create("/elsewhere/b", widget("b"))
        watch = store.watch(key_prefix, resource_version=rv(created) - 1,
                            options=WatchOptions(progress_notify=True))
        async with contextlib.aclosing(watch):
            assert (await next_event(watch)).type == "ADDED"
            bookmark = await next_event(watch)
        assert bookmark.type == "BOOKMARK"
        assert bookmark.revision >= rv(other)
        assert rv(bookmark.object) == bookmark.revision
    finally:
        if client is not None:
            await client.close()


async def test_send_initial_events(store: ContractStore, key_prefix: str) -> None:
    """The watch-list protocol on storage itself: the selected state, the end bookmark, then
    the changes after the state's revision (as kube's etcd3 watcher)."""

    def blue(obj: Object) -> bool:
        return bool(obj["spec"].get("color") == "blue")

    a = await store.create(key_prefix + "a", widget("a", color="blue"))
    b = await store.create(key_prefix + "b", widget("b", color="red"))
    c = await store.create(key_prefix + "c", widget("c", color="blue"))
    await store.create(key_prefix[:-1] + "-sibling/x", widget("x", color="blue"))
    options = WatchOptions(send_initial_events=True, allow_bookmarks=True)
    watch = store.watch(key_prefix, resource_version=None, predicate=blue, options=options)
    async with contextlib.aclosing(watch):
        initial = await take(watch, 3)
        assert [(e.type, e.object) for e in initial[:2]] == [("ADDED", a), ("ADDED", c)]
        end = initial[2]
        assert end.type == "BOOKMARK"
        assert end.object["metadata"]["annotations"] == {INITIAL_EVENTS_END_ANNOTATION: "true"}
        assert end.revision == rv(end.object) >= rv(c)
        assert [e.revision for e in initial[:2]] == [end.revision] * 2
        d = await store.create(key_prefix + "d", widget("d", color="blue"))
        assert summary([await next_event(watch)]) == [("ADDED", "d", rv(d))]

    # Not older than a revision reached, without the bookmark; one key alone.
    watch = store.watch(key_prefix + "b", resource_version=rv(b),
                        options=WatchOptions(send_initial_events=True, recursive=False))
    async with contextlib.aclosing(watch):
        assert [(e.type, e.object) for e in await take(watch, 1)] == [("ADDED", b)]
        b2 = await store.guaranteed_update(key_prefix + "b", set_spec(color="green"))
        await store.create(key_prefix + "bb", widget("bb"))
        b3 = await store.guaranteed_update(key_prefix + "b", set_spec(color="blue"))
        assert summary(await take(watch, 2)) == [("MODIFIED", "b", rv(b2)),
                                                 ("MODIFIED", "b", rv(b3))]

    ahead = await store.current_revision() + 100
    with pytest.raises(TooLargeResourceVersionError):
        await next_event(store.watch(key_prefix, resource_version=ahead,
                                     options=WatchOptions(send_initial_events=True)))


async def test_watch_survives_etcd_restart(
    make_etcd: Callable[..., EtcdServer], key_prefix: str
) -> None:
    """Stop etcd mid-watch, start it again, write: every event once, in order."""
    server = make_etcd()
    client = await connect(EtcdSettings(endpoints=(server.endpoint,), request_timeout=2.0))
    store = Etcd3Store(client)
    try:
        start = await store.current_revision()
        writes = [await store.create(key_prefix + f"w{i}", widget(f"w{i}")) for i in range(4)]
        watch = store.watch(key_prefix, resource_version=start)
        async with contextlib.aclosing(watch):
            received = await take(watch, 1)  # three more already written, not yet consumed

            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)

            async def write(i: int) -> None:
                writes.append(await create_eventually(store, key_prefix + f"w{i}", widget(f"w{i}")))

            await write(4)
            received += await take(watch, 4)

            # A second restart with nothing written while etcd is down.
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            await write(5)
            await write(6)
            received += await take(watch, 2)

        assert [e.type for e in received] == ["ADDED"] * 7
        assert [e.object for e in received] == writes
        assert [e.revision for e in received] == [rv(w) for w in writes]
    finally:
        await client.close()


async def test_watch_waits_for_etcd_that_is_down(
    make_etcd: Callable[..., EtcdServer], key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A watch opened while etcd is down keeps retrying and delivers once etcd is back."""
    caplog.set_level(logging.DEBUG, logger="kext.storage.etcd3")
    server = make_etcd()
    client = await connect(EtcdSettings(endpoints=(server.endpoint,), request_timeout=2.0))
    store = Etcd3Store(client)
    try:
        start = await store.current_revision()
        await asyncio.to_thread(server.stop)
        watch = store.watch(key_prefix, resource_version=start)
        async with contextlib.aclosing(watch):
            pending = asyncio.ensure_future(next_event(watch))

            async def retried() -> bool:
                return "still failing" in caplog.text

            await until(retried, what="the watch to retry")
            await asyncio.to_thread(server.start)
            created = await create_eventually(store, key_prefix + "a", widget("a"))
            event = await pending
        assert (event.type, event.object) == ("ADDED", created)
    finally:
        await client.close()
