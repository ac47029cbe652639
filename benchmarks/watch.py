"""Watch fan-out: N watchers of one resource collection while a writer creates objects at a
steady rate; every event's delivery latency (writer about to write → watcher reads the event)
and the events delivered per second. kext's watchers are HTTP watch streams; the baseline's
are N etcd watch streams of the same prefix (one gRPC stream each, on one channel). The writer
writes to etcd directly in both cases, so both sides see the same writes."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson
from aetcd import rpc
from aetcd.utils import prefix_range_end

from benchmarks.client import HTTPError
from benchmarks.h2client import H2Lane
from benchmarks.loadgen import CPUMeter, percentile
from benchmarks.targets import Client, KextTarget, stored_widget
from kext.storage.etcd3 import EtcdClient

SENTINEL = "sentinel"  # the object every kext watcher gets first


class WatchNotAvailable(Exception):
    """kext does not serve watches (it answered with an error, or like a list)."""


@dataclass
class Delivery:
    """What the watchers of one run received."""

    sent: dict[str, float] = field(default_factory=dict)  # object name -> time of write
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    unexpected: int = 0  # events for objects this run did not write (or ERROR events)
    last: float = 0.0
    first_error: str = ""
    write_latencies: list[float] = field(default_factory=list)  # the writer's own requests

    def record(self, name: str, at: float) -> None:
        sent = self.sent.get(name)
        if sent is None:
            self.unexpected += 1
            return
        self.latencies.append(at - sent)
        self.received += 1
        self.last = at


@dataclass
class WatchResult:
    watchers: int
    writes: int
    write_seconds: float
    delivery: Delivery
    cpu: dict[str, float]
    setup_seconds: float
    connections: set[Any] = field(default_factory=set)  # the connections the watches used

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.delivery.latencies)
        expected = self.watchers * self.writes
        first = min(self.delivery.sent.values(), default=0.0)
        span = self.delivery.last - first if self.delivery.received else 0.0
        ms = 1000.0
        return {
            "watchers": self.watchers,
            "writes": self.writes,
            "write_rate": round(self.writes / self.write_seconds, 1) if self.write_seconds else 0,
            "expected_events": expected,
            "delivered_events": self.delivery.received,
            "delivered_fraction": round(self.delivery.received / expected, 4) if expected else 0,
            "unexpected_events": self.delivery.unexpected,
            "events_per_s": round(self.delivery.received / span, 1) if span > 0 else 0.0,
            "p50_ms": round(percentile(ordered, 50) * ms, 3),
            "p90_ms": round(percentile(ordered, 90) * ms, 3),
            "p99_ms": round(percentile(ordered, 99) * ms, 3),
            "max_ms": round(ordered[-1] * ms, 3) if ordered else None,
            # The latency distribution, for plots: the 0th..100th percentiles.
            "percentiles_ms": [round(percentile(ordered, q) * ms, 3) for q in range(1, 101)]
            if ordered else [],
            "cpu_cores": self.cpu,
            "setup_s": round(self.setup_seconds, 2),
            "writer_p50_ms": _ms(self.delivery.write_latencies, 50),
            "writer_p99_ms": _ms(self.delivery.write_latencies, 99),
            **({"first_error": self.delivery.first_error} if self.delivery.first_error else {}),
        }


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(sorted(values), q) * 1000, 3) if values else None


async def _write_steadily(write: Callable[[str, int], Awaitable[None]], delivery: Delivery,
                          rate: float, duration: float) -> tuple[int, float]:
    """Create objects e0, e1, ... at `rate` per second for `duration` seconds, one at a time.
    Returns (writes done, seconds taken)."""
    interval = 1.0 / rate
    tag = f"{random.getrandbits(24):06x}"  # runs in one namespace write distinct names
    start = time.perf_counter()
    i = 0
    while True:
        due = start + i * interval
        if due - start >= duration:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        name = f"e{i}-{tag}"
        delivery.sent[name] = time.perf_counter()
        await write(name, i)
        i += 1
    return i, time.perf_counter() - start


async def _drain(delivery: Delivery, expected: int, timeout: float) -> None:
    """Wait until every expected event arrived, or nothing arrived for a while, or timeout."""
    deadline = time.perf_counter() + timeout
    seen, quiet_since = -1, time.perf_counter()
    while delivery.received < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        if delivery.received != seen:
            seen, quiet_since = delivery.received, time.perf_counter()
        elif time.perf_counter() - quiet_since > 3.0:
            break


def etcd_writer(client: EtcdClient, key_prefix: str, namespace: str
                ) -> Callable[[str, int], Awaitable[None]]:
    """Creates `<key_prefix><name>` holding a stored Widget of namespace."""
    async def write(name: str, seq: int) -> None:
        key = f"{key_prefix}{name}".encode()
        await client.kvstub.Put(rpc.PutRequest(key=key,
                                               value=stored_widget(namespace, name, seq)))
    return write


class KextWatchers:
    """N HTTP watch streams on kext, each started just before the write of one object,
    "sentinel": every watcher first gets the sentinel's event, which shows that its watch is
    established (kext sends the response head with the first event)."""

    def __init__(self, target: KextTarget, etcd: EtcdClient, kext_key_prefix: str,
                 namespace: str, n: int) -> None:
        self.target, self.namespace, self.n = target, namespace, n
        self.etcd, self.kext_key_prefix = etcd, kext_key_prefix
        self.delivery = Delivery()
        self.connections: list[Client] = []
        self.ready = 0  # watchers that got the sentinel
        self._bodies: list[bytes] = []

    def _sink(self, lines: list[bytes], at: float) -> None:
        delivery = self.delivery
        for line in lines:
            if not line.strip():
                continue
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                self._bodies.append(line)
                delivery.unexpected += 1
                continue
            kind = event.get("type") if isinstance(event, dict) else None
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                name = event["object"]["metadata"]["name"]
                if name == SENTINEL:
                    self.ready += 1
                else:
                    delivery.record(name, at)
            elif kind == "BOOKMARK":
                continue
            else:
                self._bodies.append(line)
                delivery.unexpected += 1
                if not delivery.first_error:
                    delivery.first_error = line[:300].decode(errors="replace")

    def _body(self) -> str:
        return self._bodies[0][:300].decode(errors="replace") if self._bodies else ""

    async def open(self, timeout: float = 60.0) -> None:
        """Open the streams and wait until every one is established; raise WatchNotAvailable
        when kext does not stream a watch."""
        full_namespace = self.target.namespace_prefix + self.namespace
        key = f"{self.kext_key_prefix}{full_namespace}/{SENTINEL}".encode()
        written = await self.etcd.kvstub.Put(rpc.PutRequest(
            key=key, value=stored_widget(full_namespace, SENTINEL)))
        await self.target.list_count(self.namespace)  # a consistent read: kext has seen it
        self.connections = await self.target.connect(self.n)
        since = int(written.header.revision) - 1
        path = self.target.path(self.namespace) + f"?watch=true&resourceVersion={since}"
        try:
            statuses = await asyncio.gather(*(c.stream(path, self._sink, timeout)
                                              for c in self.connections))
        except HTTPError as exc:
            self.close()
            raise WatchNotAvailable(f"kext did not answer the watch: {exc}") from None
        bad = [s for s in statuses if s != 200]
        if bad:
            self.close()
            raise WatchNotAvailable(f"kext answered the watch with HTTP {bad[0]}: "
                                    f"{self._body()}")
        deadline = time.perf_counter() + timeout
        while self.ready < self.n and time.perf_counter() < deadline:
            if any(c.ended for c in self.connections):
                self.close()
                raise WatchNotAvailable(f"kext ended the watch response at once (not a "
                                        f"stream): {self._body()[:200]}")
            await asyncio.sleep(0.02)
        if self.ready < self.n:
            self.close()
            raise WatchNotAvailable(f"only {self.ready} of {self.n} watches got the existing "
                                    f"object within {timeout:g}s")

    def close(self) -> None:
        for connection in self.connections:
            connection.close()


class EtcdWatchers:
    """N etcd watches of a prefix, one gRPC Watch stream each, from start_revision."""

    def __init__(self, client: EtcdClient, key_prefix: str, n: int) -> None:
        self.client, self.key_prefix, self.n = client, key_prefix.encode(), n
        self.delivery = Delivery()
        self._calls: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, start_revision: int) -> None:
        created = asyncio.Semaphore(0)
        request = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=self.key_prefix, range_end=prefix_range_end(self.key_prefix),
            start_revision=start_revision))
        for _ in range(self.n):
            call = self.client.watchstub.Watch()
            await call.write(request)
            self._calls.append(call)
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._read(call, created)))
        for _ in range(self.n):
            await asyncio.wait_for(created.acquire(), 30)

    async def _read(self, call: Any, created: asyncio.Semaphore) -> None:
        delivery = self.delivery
        try:
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                at = time.perf_counter()
                if response.created:
                    created.release()
                for event in response.events:
                    delivery.record(event.kv.key.rsplit(b"/", 1)[1].decode(), at)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            return

    async def close(self) -> None:
        for call in self._calls:
            call.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def kext_writer(target: KextTarget, conn: Client, namespace: str, latencies: list[float]
                ) -> Callable[[str, int], Awaitable[None]]:
    """Creates Widget <name> in namespace through kext (as a user's client writes), keeping
    each create's latency."""
    async def write(name: str, seq: int) -> None:
        t0 = time.perf_counter()
        await target.create(conn, namespace, name, seq)
        latencies.append(time.perf_counter() - t0)
    return write


async def kext_fanout(target: KextTarget, etcd: EtcdClient, kext_key_prefix: str,
                      namespace: str, n: int, rate: float, duration: float,
                      meter: CPUMeter,
                      around: contextlib.AbstractContextManager[Any] | None = None
                      ) -> WatchResult:
    """N kext watchers of namespace (none: the writer alone, its baseline) while a writer
    creates objects through kext. Over HTTP/1.1 the writer has a connection of its own; over
    HTTP/2 it shares a pooled connection (one with room for another stream) with the watch
    streams, as the aggregator's requests share its connections. `around` (a profiler)
    encloses the writes and the delivery, not the set-up."""
    t0 = time.perf_counter()
    watchers = KextWatchers(target, etcd, kext_key_prefix, namespace, n)
    if n:
        await watchers.open()
    setup = time.perf_counter() - t0
    # a pooled connection with room for one more stream (as Go's pool picks), else a new one
    room = [c.connection for c in watchers.connections if isinstance(c, H2Lane)
            and c.connection.open_streams < c.connection.max_streams]
    writer_conn: Client = H2Lane(room[0]) if room else (await target.connect(1))[0]
    write = kext_writer(target, writer_conn, namespace, watchers.delivery.write_latencies)
    try:
        with around or contextlib.nullcontext():
            meter.start()
            writes, seconds = await _write_steadily(write, watchers.delivery, rate, duration)
            await _drain(watchers.delivery, writes * n, timeout=max(10.0, duration))
            cpu = meter.stop()
    finally:
        writer_conn.close()
        watchers.close()
    used = {getattr(c, "connection", c) for c in watchers.connections}
    return WatchResult(n, writes, seconds, watchers.delivery, cpu, setup, used)


async def etcd_fanout(etcd: EtcdClient, key_prefix: str, namespace: str, n: int, rate: float,
                      duration: float, meter: CPUMeter) -> WatchResult:
    """N direct etcd watches of `<key_prefix><namespace>/`, the same writes."""
    t0 = time.perf_counter()
    prefix = f"{key_prefix}{namespace}/"
    response = await etcd.kvstub.Range(rpc.RangeRequest(key=b"\0", limit=1))
    watchers = EtcdWatchers(etcd, prefix, n)
    try:
        await watchers.open(int(response.header.revision) + 1)
        setup = time.perf_counter() - t0
        meter.start()
        writes, seconds = await _write_steadily(etcd_writer(etcd, prefix, namespace),
                                                watchers.delivery, rate, duration)
        await _drain(watchers.delivery, writes * n, timeout=max(10.0, duration))
        cpu = meter.stop()
    finally:
        await watchers.close()
    return WatchResult(n, writes, seconds, watchers.delivery, cpu, setup)
