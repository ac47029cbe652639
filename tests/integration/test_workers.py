"""serving.workers: 2 — a supervisor and two worker processes on one port, on a real etcd:
requests land on both; what one acknowledges the other reads consistently; /metrics through
either counts every worker's requests; a killed worker comes back while the other serves; a
resourceVersion no worker has reached is 504 after 3 s; SIGTERM drains both and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.etcd import EtcdServer
from tests.kext_process import (
    REPO,
    KextProcess,
    free_port,
    status_of,
    wait_until_ready,
    write_config,
)
from tests.watch_client import Watch, tls_context

GROUP = "/apis/example.kext.io/v1alpha1"
HEADER = "X-Kext-Worker"
WIDGETS_GET = {"verb": "GET", "resource": "widgets", "subresource": "", "code": "200"}


def start_workers(workdir: Path, etcd_endpoint: str | None, workers: int = 2) -> KextProcess:
    """kext with serving.workers on a free port (etcd_endpoint None: its embedded etcd),
    once every worker serves."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    path = write_config(workdir, port, etcd_endpoint or "")
    config = yaml.safe_load(path.read_text())
    config["serving"]["workers"] = workers
    if etcd_endpoint is None:
        config["storage"]["etcd"] = {"endpoints": []}
        config["storage"]["embedded"] = {"dataDir": str(workdir / "etcd")}
    path.write_text(yaml.safe_dump(config))
    log_path = workdir / "kext.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "kext", "--config", str(path)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    kext = KextProcess(workdir, f"https://127.0.0.1:{port}", process, log_path)
    wait_until_ready(kext, 60)
    wait_for(lambda: f"{workers} workers (pids" in kext.log(), 30, "every worker to serve")
    return kext


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pids(kext: KextProcess) -> dict[int, int]:
    """The supervisor's worker processes now: worker index -> pid."""
    pids = {}
    children = Path(f"/proc/{kext.process.pid}/task/{kext.process.pid}/children")
    for pid in children.read_text().split():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"kext.server.worker" in args:
            pids[int(args[args.index(b"--index") + 1])] = int(pid)
    return pids


def fresh(kext: KextProcess, method: str, path: str, **kwargs: Any) -> requests.Response:
    """One request on a connection of its own (the kernel hands it to either worker)."""
    with kext.session() as session:
        return session.request(method, f"{kext.url}{path}", headers={"Connection": "close"},
                               timeout=30, **kwargs)


def pinned(kext: KextProcess, index: int) -> requests.Session:
    """A session whose kept-alive connection is served by worker index."""
    for _ in range(200):
        session = kext.session()
        if session.get(f"{kext.url}/healthz", timeout=10).headers.get(HEADER) == str(index):
            return session
        session.close()
    raise AssertionError(f"no connection reached worker {index} in 200 tries")


def served_by(response: requests.Response) -> str:
    return response.headers.get(HEADER, "")


def widget(name: str, size: int = 1) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": size, "color": "red"}}


def request_count(text: str, **labels: str) -> float:
    """apiserver_request_total summed over the samples with these label values."""
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "apiserver_request_total"
               and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def workers(etcd_server: EtcdServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    kext = start_workers(tmp_path_factory.mktemp("workers"), etcd_server.endpoint)
    try:
        yield kext
    finally:
        kext.stop()


@pytest.fixture
def namespace() -> str:
    return f"wk-{uuid.uuid4().hex[:8]}"


def test_requests_land_on_every_worker(workers: KextProcess) -> None:
    seen: set[str] = set()
    for _ in range(200):
        response = fresh(workers, "GET", f"{GROUP}/widgets")
        assert response.status_code == 200, response.text
        seen.add(served_by(response))
        if seen == {"0", "1"}:
            break
    assert seen == {"0", "1"}
    assert sorted(worker_pids(workers)) == [0, 1]


def test_one_worker_is_todays_single_process(kext: KextProcess) -> None:
    response = kext.session().get(f"{kext.url}{GROUP}/widgets")
    assert response.status_code == 200
    assert HEADER not in response.headers
    assert worker_pids(kext) == {}


def test_a_write_through_one_worker_is_read_consistently_through_the_other(
        workers: KextProcess, namespace: str) -> None:
    a, b = pinned(workers, 0), pinned(workers, 1)
    on = f"{workers.url}{GROUP}/namespaces/{namespace}/widgets"
    for i in range(20):
        writer, reader = (a, b) if i % 2 == 0 else (b, a)
        created = writer.post(on, json=widget(f"w-{i}", i + 1))
        assert created.status_code == 201, created.text
        rv = created.json()["metadata"]["resourceVersion"]
        # resourceVersion unset: a consistent list, which proves the reader's cache has
        # caught up with etcd before answering
        listed = reader.get(on)
        assert served_by(listed) != served_by(created)
        assert f"w-{i}" in [item["metadata"]["name"] for item in listed.json()["items"]]
        # not older than the write: served from the reader's cache once it has reached it
        at_least = reader.get(on, params={"resourceVersion": rv,
                                          "resourceVersionMatch": "NotOlderThan"})
        assert at_least.status_code == 200, at_least.text
        assert int(at_least.json()["metadata"]["resourceVersion"]) >= int(rv)
        assert f"w-{i}" in [item["metadata"]["name"] for item in at_least.json()["items"]]
        read = reader.get(f"{on}/w-{i}")
        assert read.json()["metadata"]["resourceVersion"] == rv


@pytest.mark.asyncio
async def test_a_watch_through_one_worker_sees_writes_through_the_other(
        workers: KextProcess, namespace: str) -> None:
    on = f"{workers.url}{GROUP}/namespaces/{namespace}/widgets"
    context = tls_context(workers.ca_file, workers.admin_cert)
    start = fresh(workers, "GET", f"{GROUP}/namespaces/{namespace}/widgets")
    rv = start.json()["metadata"]["resourceVersion"]
    watch = await Watch.open(f"{on}?watch=true&resourceVersion={rv}", context)
    try:
        writer = pinned(workers, 1 - int(watch.headers[HEADER.lower()]))
        names = [f"w-{i}" for i in range(5)]
        for name in names:
            assert writer.post(on, json=widget(name)).status_code == 201
        events = watch.events()
        seen = [(await asyncio.wait_for(anext(events), 10))["object"]["metadata"]["name"]
                for _ in names]
        assert seen == names
    finally:
        watch.close()


def test_a_resource_version_no_worker_has_reached_is_504_after_3s(workers: KextProcess) -> None:
    current = int(fresh(workers, "GET", f"{GROUP}/widgets").json()["metadata"]
                  ["resourceVersion"])
    ahead = current + 1000
    for query in (f"resourceVersion={ahead}&resourceVersionMatch=NotOlderThan",
                  f"watch=true&resourceVersion={ahead}"):
        began = time.monotonic()
        response = fresh(workers, "GET", f"{GROUP}/widgets?{query}")
        waited = time.monotonic() - began
        assert response.status_code == 504, response.text
        status = status_of(response)
        assert status["reason"] == "Timeout"
        assert status["message"].startswith(f"Timeout: Too large resource version: {ahead}, "
                                            "current: ")
        assert status["details"]["causes"] == [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}]
        assert status["details"]["retryAfterSeconds"] == 1
        assert waited >= 2.9


def test_metrics_through_any_worker_count_every_workers_requests(
        workers: KextProcess, namespace: str) -> None:
    path = f"{GROUP}/namespaces/{namespace}/widgets"
    assert fresh(workers, "POST", path, json=widget("counted")).status_code == 201
    scrapers = pinned(workers, 0), pinned(workers, 1)
    before = request_count(scrapers[0].get(f"{workers.url}/metrics").text, **WIDGETS_GET)
    served: set[str] = set()
    n = 30
    for _ in range(n):
        response = fresh(workers, "GET", f"{path}/counted")
        assert response.status_code == 200
        served.add(served_by(response))
    assert served == {"0", "1"}  # the sum is over both
    for scraper in scrapers:
        response = scraper.get(f"{workers.url}/metrics")
        assert response.status_code == 200
        assert request_count(response.text, **WIDGETS_GET) == before + n
    text = scrapers[1].get(f"{workers.url}/metrics").text
    durations = {tuple(s.labels.items()): s.value
                 for family in text_string_to_metric_families(text) for s in family.samples
                 if s.name == "apiserver_request_duration_seconds_count"
                 and s.labels["verb"] == "GET" and s.labels["resource"] == "widgets"}
    assert sum(durations.values()) == before + n
    assert "kext_workers 2.0" in text


def test_a_killed_worker_comes_back_and_the_other_keeps_serving(
        workers: KextProcess, namespace: str) -> None:
    path = f"{GROUP}/namespaces/{namespace}/widgets"
    assert fresh(workers, "POST", path, json=widget("survivor")).status_code == 201
    counted = request_count(fresh(workers, "GET", "/metrics").text, **WIDGETS_GET)
    killed = worker_pids(workers)[1]
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: worker_pids(workers).get(1) != killed, 10, "the supervisor to see it")
    for _ in range(20):  # served by worker 0 until worker 1 is back, then by either
        response = fresh(workers, "GET", f"{path}/survivor")
        assert response.status_code == 200, response.text
    restarted = wait_for(lambda: worker_pids(workers).get(1), 30, "worker 1 to start again")
    assert restarted != killed
    wait_for(lambda: served_by(fresh(workers, "GET", "/healthz")) == "1", 30,
             "worker 1 to serve again")
    assert f"worker 1 (pid {killed}) was killed by SIGKILL; starting it again in 1s" \
        in workers.log()
    # the killed worker's counts stay in the sum: the counter never goes back
    metrics = pinned(workers, 1).get(f"{workers.url}/metrics").text
    assert request_count(metrics, **WIDGETS_GET) == counted + 20
    assert "kext_worker_restarts_total 1.0" in metrics


@pytest.mark.asyncio
async def test_sigterm_drains_every_worker_then_the_embedded_etcd_and_exits_0(
        tmp_path: Path) -> None:
    kext = start_workers(tmp_path, None)
    try:
        pids = worker_pids(kext)
        etcd = [int(p) for p in Path(f"/proc/{kext.process.pid}/task/{kext.process.pid}/"
                                     "children").read_text().split()
                if int(p) not in pids.values()]
        assert len(etcd) == 1, "the embedded etcd runs as the supervisor's child"
        context = tls_context(kext.ca_file, kext.admin_cert)
        watches: dict[str, Watch] = {}
        for _ in range(200):
            watch = await Watch.open(f"{kext.url}{GROUP}/widgets?watch=true", context)
            index = watch.headers[HEADER.lower()]
            if index in watches:
                watch.close()
            else:
                watches[index] = watch
            if len(watches) == 2:
                break
        assert sorted(watches) == ["0", "1"]
        probes = pinned(kext, 0), pinned(kext, 1)
        kext.process.send_signal(signal.SIGTERM)
        for probe in probes:  # every worker's readyz fails while it drains
            verbose = await asyncio.to_thread(
                wait_for, lambda p=probe: _not_ready(p, kext.url), 10, "readyz to fail")
            assert "[-]shutdown failed" in verbose
        for watch in watches.values():  # each stream ends with its last chunk, not a reset
            rest = await asyncio.wait_for(watch.reader.read(), 30)
            assert rest.endswith(b"0\r\n\r\n")
            watch.close()
        assert await asyncio.to_thread(kext.process.wait, 60) == 0
        assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid)
                   for pid in [*pids.values(), *etcd])
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{kext.url}/healthz", verify=kext.ca_file, timeout=5)
    finally:
        kext.stop()
    log = kext.log()
    assert "stopping 2 workers" in log and "every worker has stopped" in log
    for index in (0, 1):
        assert f"widgets/: ending 1 watches worker={index}" in log
        assert f"API server stopped worker={index}" in log
    assert "Traceback" not in log


def _not_ready(session: requests.Session, url: str) -> str:
    """readyz?verbose's text when it fails, else ""."""
    response = session.get(f"{url}/readyz?verbose", timeout=10)
    return response.text if response.status_code != 200 else ""


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_that_cannot_start_fails_the_start(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(tmp_path, port, f"http://127.0.0.1:{free_port()}")  # nobody there
    config = yaml.safe_load(path.read_text())
    config["serving"]["workers"] = 2
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "kext", "--config", str(path)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1, result.stderr
    assert "kext: a worker exited while starting" in result.stderr
    assert "Traceback" not in result.stderr
