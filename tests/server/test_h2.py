"""kext's HTTP/2 connection (kext/server/h2.py) in memory: an `h2` client state machine on
one side, H2Protocol over an in-memory transport on the other, the in-memory server's whole
filter chain behind it. What a client notices: requests and watches served as streams, the
stream limit refusing only the stream past it, flow control holding a watch's events until
the client opens its window (in order), and a protocol error closing the connection."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import orjson
import pytest

from kext.server.h2 import MAX_CONCURRENT_STREAMS, H2Protocol
from tests.registry.objects import widget
from tests.server.inmemory import WIDGETS, InMemoryServer, WireTransport, eventually

pytestmark = pytest.mark.asyncio


class Client:
    """An HTTP/2 client connection to an H2Protocol, in memory."""

    def __init__(self, server: InMemoryServer, window: int = 1 << 20,
                 max_streams: int = MAX_CONCURRENT_STREAMS) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None))
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
        })
        self.transport = WireTransport([server.admin])
        self.protocol = H2Protocol(server.handler, 3 * 1024 * 1024, max_streams)
        self.protocol.makeConnection(self.transport)
        self.h2.initiate_connection()
        self.events: list[h2.events.Event] = []
        self.data: dict[int, bytes] = {}
        self.statuses: dict[int, int] = {}
        self.resets: dict[int, h2.errors.ErrorCodes] = {}
        self.ended_streams: set[int] = set()
        self.pump()

    def pump(self) -> None:
        """Deliver what each side has written to the other."""
        out = self.h2.data_to_send()
        if out:
            self.protocol.dataReceived(out)
        written = self.transport.value()
        self.transport.clear()
        if written:
            for event in self.h2.receive_data(written):
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    self.data[event.stream_id] = self.data.get(event.stream_id, b"") + event.data
                elif isinstance(event, h2.events.ResponseReceived):
                    self.statuses[event.stream_id] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended_streams.add(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    self.resets[event.stream_id] = event.error_code
            out = self.h2.data_to_send()
            if out:
                self.protocol.dataReceived(out)

    def request(self, method: str, path: str, body: bytes = b"") -> int:
        sid = self.h2.get_next_available_stream_id()
        headers = [(b":method", method.encode()), (b":path", path.encode()),
                   (b":scheme", b"https"), (b":authority", b"127.0.0.1:8443"),
                   (b"accept", b"application/json")]
        if body:
            headers.append((b"content-type", b"application/json"))
        self.h2.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)
        self.pump()
        return sid

    async def until(self, done: Any, timeout: float = 5) -> None:
        def check() -> bool:
            self.pump()
            return bool(done())
        await eventually(check, timeout)

    def ended(self, sid: int) -> bool:
        return sid in self.ended_streams

    def status(self, sid: int) -> int | None:
        return self.statuses.get(sid)

    def reset(self, sid: int) -> h2.errors.ErrorCodes | None:
        return self.resets.get(sid)


async def test_requests_are_served_as_streams(server: InMemoryServer) -> None:
    client = Client(server)
    created = client.request("POST", WIDGETS, orjson.dumps(widget("a")))
    await client.until(lambda: client.ended(created))
    assert client.status(created) == 201
    got = client.request("GET", f"{WIDGETS}/a")
    listed = client.request("GET", f"{WIDGETS}?resourceVersion=0")
    await client.until(lambda: client.ended(got) and client.ended(listed))
    assert client.status(got) == 200
    assert orjson.loads(client.data[got])["metadata"]["name"] == "a"
    assert [i["metadata"]["name"] for i in orjson.loads(client.data[listed])["items"]] == ["a"]


async def test_the_stream_limit_refuses_only_the_stream_past_it(
        server: InMemoryServer) -> None:
    assert Client(server).h2.remote_settings.max_concurrent_streams == 1000  # kube's
    client = Client(server, max_streams=20)
    assert client.h2.remote_settings.max_concurrent_streams == 20
    # the client ignores the limit: every stream up to it is a watch that stays open
    client.h2.remote_settings = h2.settings.Settings(client=False, initial_values={
        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 2**31 - 1})
    watches = [client.request("GET", f"{WIDGETS}?watch=true") for _ in range(20)]
    await client.until(lambda: all(client.status(s) == 200 for s in watches))
    excess = client.request("GET", f"{WIDGETS}?watch=true")
    await client.until(lambda: client.reset(excess) is not None)
    assert client.reset(excess) == h2.errors.ErrorCodes.REFUSED_STREAM
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events)
    # the connection goes on: the open watches see a change
    await server.request("POST", WIDGETS, widget("b"))
    await client.until(lambda: all(b'"name":"b"' in client.data.get(s, b"")
                                   for s in watches))
    assert not client.transport.disconnecting


async def test_a_watch_waits_for_its_window_and_keeps_its_order(
        server: InMemoryServer) -> None:
    client = Client(server, window=600)  # about one event
    sid = client.request("GET", f"{WIDGETS}?watch=true")
    await client.until(lambda: client.status(sid) == 200)
    for name in ("a", "b", "c"):
        await server.request("POST", WIDGETS, widget(name))
    await client.until(lambda: b'"name":"a"' in client.data.get(sid, b""))
    client.pump()
    assert b'"name":"c"' not in client.data[sid]  # held: the window is used up
    client.h2.increment_flow_control_window(100_000, stream_id=sid)
    await client.until(lambda: b'"name":"c"' in client.data.get(sid, b""))
    names = [orjson.loads(line)["object"]["metadata"]["name"]
             for line in client.data[sid].splitlines()]
    assert names == ["a", "b", "c"]


async def test_a_client_resetting_its_watch_ends_it(server: InMemoryServer) -> None:
    client = Client(server)
    cache = server.server.serving.caches[0]
    sid = client.request("GET", f"{WIDGETS}?watch=true")
    await client.until(lambda: client.status(sid) == 200)
    assert cache.watcher_count == 1
    client.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    client.pump()
    await eventually(lambda: cache.watcher_count == 0)


async def test_a_malformed_header_block_is_goaway_and_close(server: InMemoryServer) -> None:
    client = Client(server)
    # a HEADERS frame on stream 1 whose block is not HPACK (index 0 is invalid)
    client.protocol.dataReceived(b"\x00\x00\x01\x01\x05\x00\x00\x00\x01\x80")
    events = client.h2.receive_data(client.transport.value())
    assert [e.error_code for e in events if isinstance(e, h2.events.ConnectionTerminated)
            ] == [h2.errors.ErrorCodes.PROTOCOL_ERROR]
    assert client.transport.disconnecting


async def test_after_the_clients_goaway_the_connection_closes(server: InMemoryServer) -> None:
    client = Client(server)
    sid = client.request("GET", f"{WIDGETS}?resourceVersion=0")
    await client.until(lambda: client.ended(sid))
    client.h2.close_connection()
    client.pump()
    assert client.transport.disconnecting


async def test_a_body_past_the_limit_is_413_in_kubes_words(server: InMemoryServer) -> None:
    client = Client(server)
    client.protocol.max_body_bytes = 1024
    big = client.request("POST", WIDGETS, orjson.dumps(widget("big", size="x" * 2048)))
    await client.until(lambda: client.status(big) is not None)
    assert client.status(big) == 413
    status = orjson.loads(client.data[big])
    assert (status["reason"], status["message"]) == (
        "RequestEntityTooLarge", "Request entity too large: limit is 1024")
