"""SIGTERM as an operator sees it: under a write load, every write kext acknowledged is in
etcd and kext exits 0; readyz fails at once, the listener closes after the shutdown delay,
an open watch ends with the chunked stream's terminator; an embedded etcd stops last."""

from __future__ import annotations

import asyncio
import http.client
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from kext.storage.etcd3 import Etcd3Store, connect
from kext.storage.interface import ListOptions
from kext.storage.settings import EtcdSettings
from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext

GROUP = "/apis/example.kext.io/v1alpha1"
TRIALS = 20
WRITERS = 4


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": "example.kext.io/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"size": 1}}


@dataclass
class WriteLoad:
    """WRITERS threads creating widgets as fast as kext answers, each on its own keep-alive
    connection, until stopped; the names kext answered 201 for are `acknowledged`."""

    kext: KextProcess
    namespace: str
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0  # answered otherwise, or not at all
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(WRITERS):
            thread = threading.Thread(target=self._write, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _write(self, writer: int) -> None:
        session = self.kext.session()
        base = f"{self.kext.url}{GROUP}/namespaces/{self.namespace}/widgets"
        i = 0
        while not self._stop.is_set():
            name = f"w{writer}-{i}"
            i += 1
            try:
                response = session.post(base, json=widget(name), timeout=30)
            except requests.RequestException:
                self.refused += 1
                self._stop.wait(0.01)  # the listener is closed: do not spin
                continue
            if response.status_code == 201:
                self.acknowledged.append(name)
            else:
                self.refused += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


async def _stored(endpoint: str, prefix: str) -> set[str]:
    client = await connect(EtcdSettings(endpoints=(endpoint,)))
    try:
        listed = await Etcd3Store(client).list(prefix, ListOptions())
        return {obj["metadata"]["name"] for obj in listed.items}
    finally:
        await client.close()


def stored_names(etcd: EtcdServer, storage_prefix: str, namespace: str) -> set[str]:
    """The widgets of namespace as etcd holds them (read from etcd, not through kext)."""
    prefix = f"{storage_prefix}/example.kext.io/widgets/{namespace}/"
    return asyncio.run(_stored(etcd.endpoint, prefix))


def test_sigterm_during_writes_loses_no_acknowledged_write(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    prefix = "/kext-shutdown"
    results = []
    for trial in range(TRIALS):
        kext = start_kext(tmp_path, etcd_server.endpoint,
                          serving={"shutdownDelayDuration": "100ms"},
                          storage={"prefix": prefix})
        namespace = f"trial-{trial}"
        load = WriteLoad(kext, namespace)
        load.start()
        # SIGTERM lands while writes are in flight: after a few have been acknowledged
        wanted = 20 + trial
        wait_for(lambda: len(load.acknowledged) >= wanted,  # noqa: B023 - waited for here
                 30, "writes to be acknowledged")
        kext.process.send_signal(signal.SIGTERM)
        code = kext.process.wait(30)
        load.stop()
        stored = stored_names(etcd_server, prefix, namespace)
        lost = set(load.acknowledged) - stored
        results.append((code, len(load.acknowledged), len(lost)))
        assert code == 0, kext.log()
        assert not lost, f"trial {trial}: acknowledged but not in etcd: {sorted(lost)}"
        assert "Traceback" not in kext.log(), kext.log()
    print(f"\n{TRIALS} SIGTERM trials (exit code, writes acknowledged, lost): {results}")
    assert [r[0] for r in results] == [0] * TRIALS
    assert sum(r[2] for r in results) == 0


def _raw_watch(kext: KextProcess, path: str) -> tuple[ssl.SSLSocket, bytes]:
    """A watch on a raw TLS socket (HTTP/1.1): the socket, and what was read of the
    response up to its headers."""
    context = ssl.create_default_context(cafile=kext.ca_file)
    context.load_cert_chain(*kext.admin_cert)
    host, port = kext.url.removeprefix("https://").split(":")
    sock = context.wrap_socket(socket.create_connection((host, int(port)), 10),
                               server_hostname=host)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(65536)
    return sock, head


def test_sigterm_fails_readyz_then_closes_the_listener_and_ends_watches_cleanly(
    etcd_server: EtcdServer, tmp_path: Path
) -> None:
    kext = start_kext(tmp_path, etcd_server.endpoint, serving={"shutdownDelayDuration": "2s"})
    http_session = kext.session()
    ns = "shutdown-watch"
    assert http_session.post(f"{kext.url}{GROUP}/namespaces/{ns}/widgets",
                             json=widget("before")).status_code == 201
    sock, head = _raw_watch(kext, f"{GROUP}/namespaces/{ns}/widgets?watch=true")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    streamed = head.partition(b"\r\n\r\n")[2]

    kext.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()

    def readyz_fails() -> bool:
        return http_session.get(f"{kext.url}/readyz?verbose", timeout=5).status_code == 500

    wait_for(readyz_fails, 1.5, "readyz to fail")
    assert time.monotonic() - signalled < 2.0  # within the delay: the listener is still open
    verbose = http_session.get(f"{kext.url}/readyz?verbose", timeout=5).text
    assert "[-]shutdown failed" in verbose and "[+]etcd ok" in verbose

    # the watch stream ends with the terminating chunk, then the connection closes
    sock.settimeout(20)
    while True:
        data = sock.recv(65536)
        if not data:
            break
        streamed += data
    sock.close()
    assert time.monotonic() - signalled >= 2.0  # not before the delay
    assert streamed.endswith(b"0\r\n\r\n"), streamed[-200:]
    events = [line for line in _dechunk(streamed).splitlines() if line]
    assert len(events) == 1 and b'"ADDED"' in events[0]  # the initial state, then a clean end

    assert kext.process.wait(30) == 0
    try:
        http.client.HTTPSConnection(kext.url.removeprefix("https://"), timeout=2).connect()
        raise AssertionError("kext still accepts connections after it exited")
    except OSError:
        pass
    log = kext.log()
    assert log.index("shutting down") < log.index("API server stopped")
    assert "aborting" not in log and "Traceback" not in log


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out += rest[:size]
        data = rest[size + 2:]
    raise AssertionError("the stream has no terminating chunk")


def test_embedded_etcd_stops_last_and_keeps_every_acknowledged_write(
    tmp_path: Path, etcd_server: EtcdServer
) -> None:
    """On its embedded etcd (no endpoints), kext stops etcd after the API server; what it
    acknowledged is there when kext starts again on the same data."""
    embedded = {"prefix": "/registry", "etcd": {"endpoints": []},
                "embedded": {"dataDir": str(tmp_path / "etcd")}}
    kext = start_kext(tmp_path, etcd_server.endpoint, timeout=60,
                      serving={"shutdownDelayDuration": "100ms"}, storage=embedded)
    load = WriteLoad(kext, "embedded")
    load.start()
    wait_for(lambda: len(load.acknowledged) >= 30, 30, "writes to be acknowledged")
    kext.process.send_signal(signal.SIGTERM)
    assert kext.process.wait(30) == 0
    load.stop()
    log = kext.log()
    assert log.index("API server stopped") < log.index("embedded etcd stopped")

    again = start_kext(tmp_path, etcd_server.endpoint, timeout=60, storage=embedded)
    try:
        listed = again.session().get(f"{again.url}{GROUP}/namespaces/embedded/widgets").json()
        names = {item["metadata"]["name"] for item in listed["items"]}
        assert set(load.acknowledged) <= names
    finally:
        assert again.stop() == 0
