"""Two kext replicas on one etcd (same storage prefix), as a Deployment with replicas: 2 runs
them: what one acknowledges the other reads, lists and watches at once, and resourceVersions
from one are checked by the other."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext, status_of
from tests.watch_client import Watch, tls_context

GROUP = "/apis/example.kext.io/v1alpha1"


@pytest.fixture(scope="module")
def replicas(etcd_server: EtcdServer,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KextProcess, ...]]:
    storage = {"prefix": f"/kext-replicas-{uuid.uuid4().hex[:8]}",
               "etcd": {"endpoints": [etcd_server.endpoint]}}
    started: list[KextProcess] = []
    try:
        for name in ("a", "b"):
            workdir: Path = tmp_path_factory.mktemp(f"replica-{name}")
            started.append(start_kext(workdir, etcd_server.endpoint, storage=storage))
        yield tuple(started)
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def collections(replicas: tuple[KextProcess, ...]) -> tuple[str, str]:
    """The widgets collection of a fresh namespace, as each replica serves it."""
    namespace = f"rep-{uuid.uuid4().hex[:8]}"
    a, b = (f"{r.url}{GROUP}/namespaces/{namespace}/widgets" for r in replicas)
    return a, b


def widget(name: str, size: int = 1) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": size, "color": "red"}}


def sessions(replicas: tuple[KextProcess, ...]) -> tuple[requests.Session, requests.Session]:
    a, b = replicas
    return a.session(), b.session()


def test_a_write_through_one_is_read_through_the_other(
        replicas: tuple[KextProcess, ...], collections: tuple[str, str]) -> None:
    a, b = sessions(replicas)
    on_a, on_b = collections
    created = a.post(on_a, json=widget("shared", 3))
    assert created.status_code == 201, created.text
    read = b.get(f"{on_b}/shared")
    assert read.status_code == 200, read.text
    assert read.json()["metadata"]["uid"] == created.json()["metadata"]["uid"]
    assert read.json()["metadata"]["resourceVersion"] == \
        created.json()["metadata"]["resourceVersion"]
    assert read.json()["spec"]["size"] == 3
    assert b.delete(f"{on_b}/shared").status_code == 200
    assert a.get(f"{on_a}/shared").status_code == 404


def test_a_consistent_list_on_the_other_sees_every_acknowledged_write(
        replicas: tuple[KextProcess, ...], collections: tuple[str, str]) -> None:
    a, b = sessions(replicas)
    on_a, on_b = collections
    for i in range(20):
        assert a.post(on_a, json=widget(f"w-{i}")).status_code == 201
        # resourceVersion="" (unset) is a consistent read: no acknowledged write is missing.
        listed = b.get(on_b, params={"resourceVersion": ""})
        assert listed.status_code == 200
        names = {item["metadata"]["name"] for item in listed.json()["items"]}
        assert f"w-{i}" in names, f"replica b's list misses w-{i} that replica a acknowledged"
    updated = a.patch(f"{on_a}/w-0", json={"spec": {"size": 9}},
                      headers={"Content-Type": "application/merge-patch+json"})
    assert updated.status_code == 200
    listed = b.get(on_b).json()
    assert next(i for i in listed["items"] if i["metadata"]["name"] == "w-0")["spec"] == \
        {"size": 9, "color": "red"}
    assert int(listed["metadata"]["resourceVersion"]) >= \
        int(updated.json()["metadata"]["resourceVersion"])


def test_an_update_with_a_stale_resource_version_from_one_is_refused_by_the_other(
        replicas: tuple[KextProcess, ...], collections: tuple[str, str]) -> None:
    a, b = sessions(replicas)
    on_a, on_b = collections
    stale = a.post(on_a, json=widget("contended")).json()
    fresh = a.patch(f"{on_a}/contended", json={"spec": {"size": 2}},
                    headers={"Content-Type": "application/merge-patch+json"}).json()
    assert fresh["metadata"]["resourceVersion"] != stale["metadata"]["resourceVersion"]
    stale["spec"]["size"] = 5
    refused = b.put(f"{on_b}/contended", json=stale)
    assert refused.status_code == 409
    status = status_of(refused)
    assert status["reason"] == "Conflict"
    assert status["message"] == (
        'Operation cannot be fulfilled on widgets.example.kext.io "contended": the object has '
        "been modified; please apply your changes to the latest version and try again")
    assert b.get(f"{on_b}/contended").json()["spec"]["size"] == 2  # nothing changed
    # The current resourceVersion, read from a, is accepted by b.
    fresh["spec"]["size"] = 5
    accepted = b.put(f"{on_b}/contended", json=fresh)
    assert accepted.status_code == 200, accepted.text
    assert a.get(f"{on_a}/contended").json()["spec"]["size"] == 5


@pytest.mark.asyncio
async def test_a_write_through_one_is_watched_through_the_other(
        replicas: tuple[KextProcess, ...], collections: tuple[str, str]) -> None:
    replica_b = replicas[1]
    a, b = sessions(replicas)
    on_a, on_b = collections
    start = b.get(on_b).json()["metadata"]["resourceVersion"]
    context = tls_context(replica_b.ca_file, replica_b.admin_cert)
    watch = await Watch.open(f"{on_b}?watch=true&resourceVersion={start}", context)
    assert watch.status == 200
    created = await asyncio.to_thread(a.post, on_a, json=widget("watched"))
    patched = await asyncio.to_thread(
        a.patch, f"{on_a}/watched", json={"spec": {"size": 4}},
        headers={"Content-Type": "application/merge-patch+json"})
    deleted = await asyncio.to_thread(a.delete, f"{on_a}/watched")
    assert [r.status_code for r in (created, patched, deleted)] == [201, 200, 200]

    events: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in watch.events():
            events.append(event)
            if len(events) == 3:
                return

    await asyncio.wait_for(collect(), 20)
    watch.close()
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["resourceVersion"] == \
        created.json()["metadata"]["resourceVersion"]
    assert events[1]["object"]["spec"]["size"] == 4
    assert events[2]["object"]["metadata"]["name"] == "watched"
