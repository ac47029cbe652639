"""Watch streams in memory, through the whole chain, read chunk by chunk as a client reads
them: one JSON event per chunk, bookmarks and the watch-list protocol, the representations,
the options kube refuses, and the ERROR event of a revision the cache no longer has."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kext.server.request import Response, StreamResponse
from kext.storage.interface import INITIAL_EVENTS_END_ANNOTATION
from tests.registry.objects import API_VERSION, widget
from tests.server.inmemory import (
    WIDGETS,
    InMemoryServer,
    body,
    close_stream,
    next_chunk,
)
from tests.server.test_handlers import MERGE, PARTIAL, TABLE, create, status

pytestmark = pytest.mark.asyncio


@contextlib.asynccontextmanager
async def watching(server: InMemoryServer, url: str,
                   headers: dict[str, str] | None = None) -> AsyncIterator[StreamResponse]:
    response = await server.request("GET", url, headers=headers)
    assert isinstance(response, StreamResponse), getattr(response, "body", response)
    try:
        yield response
    finally:
        await close_stream(response)


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


async def test_a_watch_streams_one_event_per_chunk(server: InMemoryServer) -> None:
    await create(server, "a")
    async with watching(server, f"{WIDGETS}?watch=true") as stream:
        assert (stream.code, stream.content_type) == (200, "application/json")
        first = await next_chunk(stream)
        assert kinds([first]) == [("ADDED", "a")]
        assert first["object"]["apiVersion"] == API_VERSION
        await create(server, "b")
        await server.request("PATCH", f"{WIDGETS}/a", {"spec": {"size": 2}}, headers=MERGE)
        await server.request("DELETE", f"{WIDGETS}/b")
        events = [await next_chunk(stream) for _ in range(3)]
    assert kinds(events) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert events[1]["object"]["spec"]["size"] == 2


async def test_a_watch_from_a_resource_version(server: InMemoryServer) -> None:
    a = await create(server, "a")
    await create(server, "b")
    rv = a["metadata"]["resourceVersion"]
    async with watching(server, f"{WIDGETS}?watch=1&resourceVersion={rv}") as stream:
        assert kinds([await next_chunk(stream)]) == [("ADDED", "b")]


async def test_a_watch_of_one_object(server: InMemoryServer) -> None:
    await create(server, "a")
    await create(server, "b")
    path = "/apis/example.kext.io/v1alpha1/watch/namespaces/ns/widgets/b"
    async with watching(server, path) as stream:
        assert kinds([await next_chunk(stream)]) == [("ADDED", "b")]
        await server.request("PATCH", f"{WIDGETS}/a", {"spec": {"size": 2}}, headers=MERGE)
        await server.request("PATCH", f"{WIDGETS}/b", {"spec": {"size": 3}}, headers=MERGE)
        event = await next_chunk(stream)
    assert kinds([event]) == [("MODIFIED", "b")]
    error = status(await server.request("GET", f"{path}?fieldSelector=metadata.name%3Da"),
                   400, "BadRequest")
    assert error["message"] == "fieldSelector metadata.name doesn't match requested name"


async def test_a_selected_watch(server: InMemoryServer) -> None:
    async with watching(server, f"{WIDGETS}?watch=true&fieldSelector=spec.color%3Dred"
                        ) as stream:
        await create(server, "blue")
        await create(server, "red", color="red")
        assert kinds([await next_chunk(stream)]) == [("ADDED", "red")]
        await server.request("PATCH", f"{WIDGETS}/red", {"spec": {"color": "green"}},
                             headers=MERGE)
        assert kinds([await next_chunk(stream)]) == [("DELETED", "red")]


async def test_the_watch_list_protocol(server: InMemoryServer) -> None:
    await create(server, "a")
    url = (f"{WIDGETS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
           "&allowWatchBookmarks=true")
    async with watching(server, url) as stream:
        assert kinds([await next_chunk(stream)]) == [("ADDED", "a")]
        bookmark = await next_chunk(stream)
    assert bookmark["type"] == "BOOKMARK"
    assert (bookmark["object"]["kind"], bookmark["object"]["apiVersion"]) == ("Widget",
                                                                             API_VERSION)
    metadata = bookmark["object"]["metadata"]
    assert metadata["annotations"] == {INITIAL_EVENTS_END_ANNOTATION: "true"}
    assert int(metadata["resourceVersion"]) >= 2


@pytest.mark.parametrize(("query", "message"), [
    ("sendInitialEvents=true&allowWatchBookmarks=true",
     "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
    ("sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
     "sendInitialEvents requires setting allowWatchBookmarks to true"),
    ("resourceVersionMatch=NotOlderThan",
     "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
])
async def test_watch_options_kube_refuses_are_422(server: InMemoryServer, query: str,
                                                  message: str) -> None:
    error = status(await server.request("GET", f"{WIDGETS}?watch=true&{query}"), 422,
                   "Invalid")
    assert error["details"]["kind"] == "ListOptions"
    assert message in error["message"]


async def test_a_malformed_timeout_is_400(server: InMemoryServer) -> None:
    error = status(await server.request("GET", f"{WIDGETS}?watch=true&timeoutSeconds=soon"),
                   400, "BadRequest")
    assert error["message"] == 'strconv.ParseInt: parsing "soon": invalid syntax'


async def test_a_watch_ends_at_its_timeout(server: InMemoryServer) -> None:
    await create(server, "a")
    async with watching(server, f"{WIDGETS}?watch=true&timeoutSeconds=1") as stream:
        assert kinds([await next_chunk(stream)]) == [("ADDED", "a")]
        with pytest.raises(StopAsyncIteration):
            await next_chunk(stream, timeout=5)


async def test_a_revision_the_cache_no_longer_has_is_an_error_event(
        server: InMemoryServer) -> None:
    await create(server, "a")
    # the watch cache was primed at revision 1; writes moved on; compaction drops the past
    await server.storage.compact(await server.storage.current_revision())
    # a fresh cache (as after a restart) cannot replay from before it was primed
    cache = server.server.serving.caches[0]
    await cache.stop()
    await cache.start()
    await cache.wait_ready(5)
    async with watching(server, f"{WIDGETS}?watch=true&resourceVersion=1") as stream:
        event = await next_chunk(stream)
        assert event["type"] == "ERROR"
        assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
        assert event["object"]["message"].startswith("too old resource version: 1 (")
        with pytest.raises(StopAsyncIteration):
            await next_chunk(stream)


async def test_a_table_watch_sends_column_definitions_once(server: InMemoryServer) -> None:
    await create(server, "a", size=2)
    async with watching(server, f"{WIDGETS}?watch=true", headers=TABLE) as stream:
        first = await next_chunk(stream)
        await create(server, "b", size=3)
        second = await next_chunk(stream)
    assert first["object"]["kind"] == "Table"
    assert [c["name"] for c in first["object"]["columnDefinitions"]] == [
        "Name", "Size", "Color", "Phase", "Age"]
    assert first["object"]["rows"][0]["cells"][:2] == ["a", 2]
    assert second["object"]["columnDefinitions"] is None  # as Go encodes a nil slice
    assert second["object"]["rows"][0]["cells"][:2] == ["b", 3]


async def test_a_metadata_watch(server: InMemoryServer) -> None:
    await create(server, "a")
    async with watching(server, f"{WIDGETS}?watch=true", headers=PARTIAL) as stream:
        event = await next_chunk(stream)
    assert event["object"]["kind"] == "PartialObjectMetadata"
    assert "spec" not in event["object"]


async def test_watches_are_counted_as_kube_counts_them(server: InMemoryServer) -> None:
    await create(server, "a")

    def samples(name: str) -> list[tuple[dict[str, str], float]]:
        text = server.server.metrics.exposition().decode()
        return [(s.labels, s.value) for f in text_string_to_metric_families(text)
                for s in f.samples if s.name == name]

    async with watching(server, f"{WIDGETS}?watch=true") as stream:
        await next_chunk(stream)
        assert ({"verb": "WATCH", "group": "example.kext.io", "version": "v1alpha1",
                 "resource": "widgets", "subresource": "", "scope": "namespace",
                 "component": "apiserver"}, 1.0) in samples("apiserver_longrunning_requests")
        assert ({"group": "example.kext.io", "version": "v1alpha1", "resource": "widgets"},
                1.0) in samples("apiserver_watch_events_total")
        assert ({"group": "example.kext.io", "version": "v1alpha1", "kind": "Widget"},
                1.0) in samples("apiserver_registered_watchers")
    assert all(v == 0 for _, v in samples("apiserver_longrunning_requests"))


async def test_many_watchers_get_every_event(server: InMemoryServer) -> None:
    await create(server, "w0")
    streams = [await server.request("GET", f"{WIDGETS}?watch=true") for _ in range(20)]
    try:
        for i in (1, 2):
            assert (await server.request("POST", WIDGETS, widget(f"w{i}"))).code == 201
        for stream in streams:
            got = [await next_chunk(stream) for _ in range(3)]
            assert kinds(got) == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2")]
        cache = server.server.serving.caches[0]
        assert cache.watcher_count == 20 and cache.etcd_watch_count == 1
    finally:
        for stream in streams:
            await close_stream(stream)
    assert server.server.serving.caches[0].watcher_count == 0


async def test_a_watch_ahead_of_storage_is_504_before_the_stream(tmp_path: Path) -> None:
    server = await InMemoryServer.start(tmp_path, block_timeout=0.05)
    try:
        ahead = await server.storage.current_revision() + 10
        error = status(await server.request("GET", f"{WIDGETS}?watch=true&resourceVersion={ahead}"),
                       504, "Timeout")
        assert error["message"] == (
            f"Timeout: Too large resource version: {ahead}, current: {ahead - 10}")
        assert error["details"]["causes"] == [
            {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    finally:
        await server.stop()


async def test_without_a_primed_watch_cache_storage_serves(server: InMemoryServer) -> None:
    # a watch cache that is not primed (listing again after a failure): storage serves reads
    # and writes meanwhile, and readyz says why the server is not ready
    cache = server.server.serving.caches[0]
    await cache.stop()
    try:
        assert (await server.request("POST", WIDGETS, widget())).code == 201
        listed = await server.request("GET", WIDGETS)
        assert [i["metadata"]["name"] for i in body(listed)["items"]] == ["w"]
        readyz = await server.request("GET", "/readyz/watch-cache")
        assert isinstance(readyz, Response) and readyz.code == 500
        assert b"watch cache not primed: /registry/example.kext.io/widgets/" in readyz.body
    finally:
        await cache.start()
