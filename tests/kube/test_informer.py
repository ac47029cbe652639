"""list_and_watch and Informer against the stand-in: list, watch from the list's
resourceVersion, re-watch after a dropped connection, relist after 410, paged lists."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kext.kube import (
    Informer,
    KubeClient,
    KubeStatusError,
    Relisted,
    list_and_watch,
    list_collection,
    load_kubeconfig,
)
from tests.kube_apiserver import KubeAPIServer

pytestmark = pytest.mark.asyncio

NAMESPACES = "/api/v1/namespaces"
AUTH_CONFIGMAP = {"fieldSelector": "metadata.name=extension-apiserver-authentication"}
CONFIGMAPS = "/api/v1/namespaces/kube-system/configmaps"
FAST = (0.05, 0.2)  # back-off for tests


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def namespace(name: str, phase: str = "Active") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
            "status": {"phase": phase}}


def client_for(server: KubeAPIServer, tmp_path: Path, reactor: Any) -> KubeClient:
    access = load_kubeconfig(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    return KubeClient(access, reactor=reactor, timeout=2)


async def test_lists_then_watches_from_the_lists_version(kube_apiserver: KubeAPIServer,
                                                         tmp_path: Path, reactor: Any) -> None:
    kube_apiserver.put(namespace("default"))
    client = client_for(kube_apiserver, tmp_path, reactor)
    stream = list_and_watch(client, NAMESPACES, backoff=FAST)
    first = await anext(stream)
    assert isinstance(first, Relisted)
    assert [o["metadata"]["name"] for o in first.items] == ["default"]
    kube_apiserver.put(namespace("team-a"))
    added = await asyncio.wait_for(anext(stream), 5)
    assert not isinstance(added, Relisted)
    assert (added.type, added.object["metadata"]["name"]) == ("ADDED", "team-a")
    (watch,) = kube_apiserver.requests_to(NAMESPACES)[1:]
    assert watch.query["watch"] == "true"
    assert watch.query["resourceVersion"] == first.resource_version
    await stream.aclose()
    await client.close()


async def test_a_dropped_watch_resumes_where_it_was(kube_apiserver: KubeAPIServer,
                                                    tmp_path: Path, reactor: Any) -> None:
    kube_apiserver.put_extension_apiserver_authentication()
    client = client_for(kube_apiserver, tmp_path, reactor)
    informer = Informer(client, CONFIGMAPS, params=AUTH_CONFIGMAP, backoff=FAST)
    changes: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, new, old: changes.append(
        (kind, ((new or {}).get("data") or {}).get("client-ca-file", "")[:5])))
    informer.start()
    await informer.wait_synced(5)
    assert informer.get("extension-apiserver-authentication", "kube-system") is not None
    # kube-apiserver restarts; a change made meanwhile is not lost.
    kube_apiserver.stop()
    kube_apiserver.put_extension_apiserver_authentication(**{"client-ca-file": "ROTATED"})
    kube_apiserver.start()
    await until(lambda: ("MODIFIED", "ROTAT") in changes)
    lists = [r for r in kube_apiserver.requests_to(CONFIGMAPS) if r.query.get("watch") != "true"]
    assert len(lists) == 1  # resumed by a watch from the last resourceVersion, not a relist
    await informer.stop()
    await client.close()


async def test_a_too_old_resource_version_relists(kube_apiserver: KubeAPIServer,
                                                  tmp_path: Path, reactor: Any) -> None:
    for name in ("a", "b"):
        kube_apiserver.put(namespace(name))
    client = client_for(kube_apiserver, tmp_path, reactor)
    informer = Informer(client, NAMESPACES, backoff=FAST)
    changes: list[tuple[str, str]] = []
    informer.add_handler(lambda kind, new, old: changes.append(
        (kind, (new or old or {})["metadata"]["name"])))
    informer.start()
    await informer.wait_synced(5)
    kube_apiserver.stop()
    kube_apiserver.delete("v1", "Namespace", "a")
    kube_apiserver.put(namespace("b", "Terminating"))
    kube_apiserver.put(namespace("c"))
    kube_apiserver.compact()  # the watch cannot resume: 410, then a new list
    kube_apiserver.start()
    await until(lambda: len(changes) >= 5)
    assert sorted(changes[2:]) == [("ADDED", "c"), ("DELETED", "a"), ("MODIFIED", "b")]
    b = informer.get("b")
    assert b is not None and b["status"]["phase"] == "Terminating"
    assert sorted(o["metadata"]["name"] for o in informer.items()) == ["b", "c"]
    await informer.stop()
    await client.close()


async def test_errors_are_reported_and_retried(kube_apiserver: KubeAPIServer, tmp_path: Path,
                                               reactor: Any) -> None:
    kube_apiserver.put_extension_apiserver_authentication()
    kube_apiserver.access.deny(user="kube-admin", resource="configmaps")
    client = client_for(kube_apiserver, tmp_path, reactor)
    informer = Informer(client, CONFIGMAPS, params=AUTH_CONFIGMAP, backoff=FAST)
    informer.start()
    with pytest.raises(KubeStatusError) as forbidden:
        await informer.wait_synced(1)
    assert forbidden.value.code == 403
    kube_apiserver.access.clear()  # RBAC fixed: the informer gets there on its own
    await informer.wait_synced(5)
    assert informer.last_error is None
    await informer.stop()
    await client.close()


async def test_lists_are_read_in_pages(kube_apiserver: KubeAPIServer, tmp_path: Path,
                                       reactor: Any) -> None:
    for i in range(5):
        kube_apiserver.put(namespace(f"ns-{i}"))
    client = client_for(kube_apiserver, tmp_path, reactor)
    listed = await list_collection(client, NAMESPACES, page_size=2)
    assert [o["metadata"]["name"] for o in listed.items] == [f"ns-{i}" for i in range(5)]
    assert listed.resource_version == str(kube_apiserver.resource_version)
    pages = kube_apiserver.requests_to(NAMESPACES)
    assert [r.query.get("limit") for r in pages] == ["2", "2", "2"]
    assert "continue" not in pages[0].query and "continue" in pages[2].query
    await client.close()


async def test_a_label_selector_narrows_list_and_watch(kube_apiserver: KubeAPIServer,
                                                       tmp_path: Path, reactor: Any) -> None:
    def labelled(name: str, team: str) -> dict[str, Any]:
        ns = namespace(name)
        ns["metadata"]["labels"] = {"team": team}
        return ns

    kube_apiserver.put(labelled("a", "red"))
    kube_apiserver.put(labelled("b", "blue"))
    client = client_for(kube_apiserver, tmp_path, reactor)
    informer = Informer(client, NAMESPACES, params={"labelSelector": "team=red"}, backoff=FAST)
    informer.start()
    await informer.wait_synced(5)
    kube_apiserver.put(labelled("c", "blue"))
    kube_apiserver.put(labelled("d", "red"))
    await until(lambda: informer.get("d") is not None)
    assert sorted(o["metadata"]["name"] for o in informer.items()) == ["a", "d"]
    await informer.stop()
    await client.close()


async def test_stop_closes_the_watch(kube_apiserver: KubeAPIServer, tmp_path: Path,
                                     reactor: Any) -> None:
    client = client_for(kube_apiserver, tmp_path, reactor)
    informer = Informer(client, NAMESPACES, backoff=FAST)
    informer.start()
    await informer.wait_synced(5)
    await until(lambda: any(r.query.get("watch") for r in kube_apiserver.requests))
    assert kube_apiserver.open_connections == 1  # the watch took the list's pooled connection
    await informer.stop()
    await until(lambda: kube_apiserver.open_connections == 0)  # closed, not pooled again
    await client.close()
