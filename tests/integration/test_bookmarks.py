"""Idle bookmarks through a real kext: a watch that allows bookmarks gets a BOOKMARK every
storage.watchCache.bookmarkInterval (kube-apiserver: about once a minute) though nothing it
watches changes, at a resourceVersion it can resume from."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext
from tests.watch_client import Watch, tls_context

GROUP = "/apis/example.kext.io/v1alpha1"

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def quick_kext(etcd_server: EtcdServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    """A kext whose watch caches send bookmarks every second."""
    workdir: Path = tmp_path_factory.mktemp("kext-bookmarks")
    storage = {"prefix": f"/kext-test-{uuid.uuid4().hex[:8]}",
               "etcd": {"endpoints": [etcd_server.endpoint]},
               "watchCache": {"bookmarkInterval": "1s"}}
    process = start_kext(workdir, etcd_server.endpoint, storage=storage)
    try:
        yield process
    finally:
        process.stop()


def collection(kext: KextProcess) -> str:
    return f"{kext.url}{GROUP}/namespaces/b-{uuid.uuid4().hex[:8]}/widgets"


async def open_watch(kext: KextProcess, url: str) -> Watch:
    watch = await Watch.open(url, tls_context(kext.ca_file, kext.admin_cert))
    assert watch.status == 200
    return watch


async def next_event(events: Any, timeout: float) -> dict[str, Any]:
    event: dict[str, Any] = await asyncio.wait_for(anext(events), timeout)
    return event


async def test_an_idle_watch_gets_a_bookmark_every_interval(quick_kext: KextProcess) -> None:
    base = collection(quick_kext)
    listed = quick_kext.session().get(base, timeout=10).json()
    watch = await open_watch(quick_kext, f"{base}?watch=true&allowWatchBookmarks=true")
    quiet = await open_watch(quick_kext, f"{base}?watch=true")
    events, quiet_events = watch.events(), quiet.events()
    silence = asyncio.ensure_future(anext(quiet_events))
    try:
        # Nothing is written: two bookmarks, about a second apart.
        bookmarks = [await next_event(events, timeout=10) for _ in range(2)]
        for bookmark in bookmarks:
            assert bookmark["type"] == "BOOKMARK"
            assert bookmark["object"]["kind"] == "Widget"
            assert bookmark["object"]["apiVersion"] == "example.kext.io/v1alpha1"
            assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(
                listed["metadata"]["resourceVersion"])
        assert not silence.done()  # a watch that did not allow bookmarks gets none

        # The bookmark's resourceVersion is one to watch again from.
        rv = bookmarks[-1]["object"]["metadata"]["resourceVersion"]
        resumed = await open_watch(quick_kext, f"{base}?watch=true&resourceVersion={rv}")
        created = quick_kext.session().post(base, json={
            "apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": "one"}, "spec": {"size": 1, "color": "red"}}, timeout=10)
        assert created.status_code == 201, created.text
        event = await next_event(resumed.events(), timeout=10)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "one")
        assert (await asyncio.wait_for(silence, 10))["type"] == "ADDED"
        resumed.close()
    finally:
        silence.cancel()
        watch.close()
        quiet.close()


@pytest.mark.slow
async def test_an_idle_watch_gets_a_bookmark_about_once_a_minute(kext: KextProcess) -> None:
    """kext's default, as kube-apiserver's: about a minute between bookmarks."""
    base = collection(kext)
    watch = await open_watch(kext, f"{base}?watch=true&allowWatchBookmarks=true")
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        bookmark = await next_event(watch.events(), timeout=90)
        waited = loop.time() - began
    finally:
        watch.close()
    assert bookmark["type"] == "BOOKMARK"
    assert 50 <= waited <= 75, f"the first bookmark came after {waited:.0f}s"
