"""Watch through a real kext and its watch cache: ordering, selectors, expiry, bookmarks,
initial events, kubectl -w, the kubernetes client, etcd restarts and fan-out."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from kext.storage.etcd3 import connect
from kext.storage.settings import EtcdSettings
from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext
from tests.watch_client import Watch, tls_context

GROUP = "/apis/example.kext.io/v1alpha1"


def widget(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name, "labels": labels}, "spec": {"size": 1, "color": "red"}}


@pytest.fixture
def ns() -> str:
    return f"w-{uuid.uuid4().hex[:8]}"


def collection(kext: KextProcess, ns: str) -> str:
    return f"{kext.url}{GROUP}/namespaces/{ns}/widgets"


async def open_watch(kext: KextProcess, url: str, **headers: str) -> Watch:
    return await Watch.open(url, tls_context(kext.ca_file, kext.admin_cert), headers)


async def take(watch: Watch, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in watch.events():
            events.append(event)
            if len(events) == count:
                return

    await asyncio.wait_for(collect(), timeout)
    return events


@pytest.mark.asyncio
async def test_exactly_once_in_order_under_concurrent_writers(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    base = collection(kext, ns)
    start_rv = http.get(base).json()["metadata"]["resourceVersion"]
    watch = await open_watch(kext, f"{base}?watch=true&resourceVersion={start_rv}")
    assert watch.status == 200

    def writer(prefix: str) -> None:
        session = kext.session()
        for i in range(15):
            session.post(base, json=widget(f"{prefix}-{i}"))
            session.patch(f"{base}/{prefix}-{i}", json={"spec": {"size": 2}},
                          headers={"Content-Type": "application/merge-patch+json"})

    threads = [threading.Thread(target=writer, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    events = await take(watch, 90)
    for t in threads:
        t.join()
    watch.close()
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 90  # in order, none twice
    assert rvs[0] > int(start_rv)
    for prefix in "abc":
        for i in range(15):
            mine = [e["type"] for e in events if e["object"]["metadata"]["name"] == f"{prefix}-{i}"]
            assert mine == ["ADDED", "MODIFIED"]


@pytest.mark.asyncio
async def test_watch_from_zero_starts_with_current_state(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    base = collection(kext, ns)
    http.post(base, json=widget("existing"))
    watch = await open_watch(kext, f"{base}?watch=true")
    first = await take(watch, 1)
    assert first[0]["type"] == "ADDED" and first[0]["object"]["metadata"]["name"] == "existing"
    http.delete(f"{base}/existing")
    deleted = await take(watch, 1)
    assert deleted[0]["type"] == "DELETED"
    assert deleted[0]["object"]["metadata"]["name"] == "existing"
    watch.close()


@pytest.mark.asyncio
async def test_selector_transitions(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    base = collection(kext, ns)
    rv = http.get(base).json()["metadata"]["resourceVersion"]
    watch = await open_watch(kext, f"{base}?watch=true&resourceVersion={rv}"
                                   "&labelSelector=tier%3Dgold")
    http.post(base, json=widget("x", tier="silver"))
    http.patch(f"{base}/x", json={"metadata": {"labels": {"tier": "gold"}}},
               headers={"Content-Type": "application/merge-patch+json"})
    http.patch(f"{base}/x", json={"metadata": {"labels": {"tier": "bronze"}}},
               headers={"Content-Type": "application/merge-patch+json"})
    events = await take(watch, 2)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]
    # as kube's cache does: the last content that matched, at the change's resourceVersion
    assert events[1]["object"]["metadata"]["labels"]["tier"] == "gold"
    current = http.get(f"{base}/x").json()
    assert events[1]["object"]["metadata"]["resourceVersion"] == current["metadata"][
        "resourceVersion"]
    watch.close()


@pytest.mark.asyncio
async def test_too_old_resource_version_is_410(
    kext: KextProcess, etcd_server: EtcdServer, ns: str
) -> None:
    http = kext.session()
    base = collection(kext, ns)
    old_rv = http.post(base, json=widget("old")).json()["metadata"]["resourceVersion"]
    # Push old_rv out of the watch cache's window (1024 events) and compact etcd past it.
    prefix = yaml.safe_load((kext.workdir / "server.yaml").read_text())["storage"]["prefix"]
    client = await connect(EtcdSettings(endpoints=(etcd_server.endpoint,)))
    try:
        for i in range(1100):
            value = json.dumps({**widget(f"filler-{i}"), "metadata": {
                "name": f"filler-{i}", "namespace": ns, "uid": str(uuid.uuid4())}})
            await client.put(f"{prefix}/example.kext.io/widgets/{ns}/filler-{i}".encode(),
                             value.encode())
        await client.kv_compact(int(http.get(base).json()["metadata"]["resourceVersion"]))
    finally:
        await client.close()
    watch = await open_watch(kext, f"{base}?watch=true&resourceVersion={old_rv}")
    if watch.status == 200:
        event = (await take(watch, 1))[0]
        assert event["type"] == "ERROR"
        status = event["object"]
    else:
        status = json.loads(await watch.body())
    assert status["code"] == 410 and status["reason"] == "Expired"
    watch.close()


@pytest.mark.asyncio
async def test_bookmarks_and_initial_events(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    base = collection(kext, ns)
    http.post(base, json=widget("one"))
    http.post(base, json=widget("two"))
    watch = await open_watch(kext, f"{base}?watch=true&sendInitialEvents=true"
                                   "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
    events = await take(watch, 3)
    assert [e["type"] for e in events[:2]] == ["ADDED", "ADDED"]
    bookmark = events[2]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["kind"] == "Widget"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(
        events[1]["object"]["metadata"]["resourceVersion"])
    watch.close()
    bad = http.get(f"{base}?watch=true&sendInitialEvents=true")
    assert bad.status_code == 422


@pytest.mark.asyncio
async def test_timeout_seconds_ends_the_stream(kext: KextProcess, ns: str) -> None:
    watch = await open_watch(kext, f"{collection(kext, ns)}?watch=true&timeoutSeconds=1")
    started = time.monotonic()
    events = [e async for e in watch.events()]
    assert events == []
    assert time.monotonic() - started < 10
    watch.close()


def test_kubectl_get_watch_prints_changes(kext: KextProcess, ns: str) -> None:
    process = subprocess.Popen(
        ["kubectl", "--kubeconfig", kext.kubeconfig, "get", "widgets", "-n", ns, "-w",
         "--request-timeout", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        http = kext.session()
        lines: list[str] = []
        deadline = time.monotonic() + 20
        assert process.stdout is not None
        http.post(collection(kext, ns), json=widget("seen"))
        while time.monotonic() < deadline and not any("seen" in line for line in lines):
            lines.append(process.stdout.readline())
    finally:
        process.kill()
        process.wait()
    assert any(line.split()[:3] == ["seen", "1", "red"] for line in lines), lines


def test_kubernetes_client_watch_stream(kext: KextProcess, ns: str) -> None:
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(config_file=kext.kubeconfig)
    custom = client.CustomObjectsApi(api_client)
    kext.session().post(collection(kext, ns), json=widget("streamed"))
    stream = watch.Watch()
    seen = []
    for event in stream.stream(custom.list_namespaced_custom_object, "example.kext.io",
                               "v1alpha1", ns, "widgets", timeout_seconds=5):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        stream.stop()
    api_client.close()
    assert seen == [("ADDED", "streamed")]


@pytest.mark.asyncio
async def test_etcd_restart_mid_stream_loses_nothing(
    make_etcd: Callable[..., EtcdServer], tmp_path: Path
) -> None:
    etcd = make_etcd()
    kext = start_kext(tmp_path, etcd.endpoint)
    try:
        http = kext.session()
        base = collection(kext, "restart")
        http.post(base, json=widget("before"))
        rv = http.get(base).json()["metadata"]["resourceVersion"]
        watch = await open_watch(kext, f"{base}?watch=true&resourceVersion={rv}")
        etcd.stop()
        etcd.start()

        def ready() -> bool:
            try:
                return http.post(base, json=widget("after-0"), timeout=5).status_code == 201
            except requests.RequestException:
                return False

        deadline = time.monotonic() + 30
        while not ready():
            assert time.monotonic() < deadline, "kext did not accept writes after the restart"
            time.sleep(0.2)
        for i in range(1, 5):
            assert http.post(base, json=widget(f"after-{i}")).status_code == 201
        events = await take(watch, 5)
        assert [e["object"]["metadata"]["name"] for e in events] == [
            f"after-{i}" for i in range(5)]
        watch.close()
    finally:
        kext.stop()


@pytest.mark.asyncio
async def test_fan_out_to_1000_watchers_with_one_etcd_watch(kext: KextProcess, ns: str) -> None:
    http = kext.session()
    base = collection(kext, ns)
    rv = http.get(base).json()["metadata"]["resourceVersion"]
    context = tls_context(kext.ca_file, kext.admin_cert)
    url = f"{base}?watch=true&resourceVersion={rv}"
    watches = await asyncio.gather(*(Watch.open(url, context) for _ in range(1000)))
    assert all(w.status == 200 for w in watches)

    burst = 50
    for i in range(burst):
        assert http.post(base, json=widget(f"burst-{i}")).status_code == 201
    results = await asyncio.gather(*(take(w, burst, timeout=120) for w in watches))
    for events in results:
        assert [e["object"]["metadata"]["name"] for e in events] == [
            f"burst-{i}" for i in range(burst)]
    for w in watches:
        w.close()

    metrics = http.get(f"{kext.url}/metrics").text
    watch_lines = [line for line in metrics.splitlines()
                   if line.startswith("kext_etcd_watches{") and "widgets" in line]
    assert watch_lines and all(line.endswith(" 1.0") for line in watch_lines), watch_lines


@pytest.mark.asyncio
async def test_stalled_watcher_is_cut_off_without_delaying_others(
    kext: KextProcess, ns: str
) -> None:
    http = kext.session()
    base = collection(kext, ns)
    rv = http.get(base).json()["metadata"]["resourceVersion"]
    context = tls_context(kext.ca_file, kext.admin_cert)
    url = f"{base}?watch=true&resourceVersion={rv}"
    stalled = await Watch.open(url, context, receive_buffer=4096)  # opened, never read
    healthy = await Watch.open(url, context)
    # past what the kernel takes (its send buffer autotunes up to 4 MiB: ~400 events), the
    # transport buffers (64 KiB) and the watch cache queues for one watcher (1024 events)
    burst = 2600
    receiving = asyncio.ensure_future(take(healthy, burst, timeout=120))
    big = "x" * 10000  # past the kernel's send buffer (up to 4 MiB) the server feels the stall
    loop = asyncio.get_running_loop()

    def write_all() -> None:
        session = kext.session()
        for i in range(burst):
            body = widget(f"big-{i}")
            body["spec"]["tags"] = [big]
            assert session.post(base, json=body).status_code == 201

    await loop.run_in_executor(None, write_all)
    events = await receiving
    assert [e["object"]["metadata"]["name"] for e in events] == [f"big-{i}" for i in range(burst)]
    healthy.close()

    # the stalled watcher was cut off: its stream ends once its backlog is drained
    async def drained() -> int:
        return len([e async for e in stalled.events()])

    count = await asyncio.wait_for(drained(), 60)
    assert count < burst
    stalled.close()
    terminated = [line for line in http.get(f"{kext.url}/metrics").text.splitlines()
                  if line.startswith("apiserver_terminated_watchers_total{")]
    assert terminated and float(terminated[0].split()[-1]) >= 1
