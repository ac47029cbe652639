"""An HTTP/2 client on asyncio and the `h2` state machine that behaves, on the wire, as
kube-apiserver's aggregator does towards an extension API server: Go's HTTP/2 transport.

- SETTINGS as Go's transport sends them: no server push, a 4 MiB initial stream window, a
  10 MiB header list limit; the connection window raised to 1 GiB at once.
- WINDOW_UPDATE as Go's `inflow.add` does: a stream's (and the connection's) consumed bytes
  are handed back once at least 4 KiB of them are unsent.
- Many requests (and watch streams) multiplexed on each connection, as Go's transport pools
  them; the server's MAX_CONCURRENT_STREAMS is respected by opening more connections.
- Every request carries the front-proxy identity headers it is given (X-Remote-User, ...),
  the connection presents the front-proxy client certificate.

`H2Connection` is one connection; `H2Lane` is a worker's view of one (the same interface as
benchmarks.client.Connection: request(), stream(), ended, close()), so the targets and the
watch fan-out drive either client unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections.abc import Sequence
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from benchmarks.client import Endpoint, HTTPError, LineSink, Response

STREAM_WINDOW = 4 << 20  # Go's transportDefaultStreamFlow
CONNECTION_WINDOW = 1 << 30  # Go's transportDefaultConnFlow
MIN_REFRESH = 4 << 10  # Go's inflowMinRefresh: WINDOW_UPDATE once this much is consumed
MAX_HEADER_LIST = 10 << 20  # Go's defaultMaxHeaderListSize (sent as a setting)
_DEFAULT_WINDOW = 65535


def h2_ssl_context(ca_file: str, cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS client context offering only h2 by ALPN, presenting the given certificate."""
    context = ssl.create_default_context(cafile=ca_file)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2"])
    return context


class _Stream:
    """One request's response as it arrives."""

    __slots__ = ("body", "done", "ended", "head", "partial", "sink", "status", "unsent")

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: LineSink | None) -> None:
        self.status = 0
        self.body = bytearray()
        self.sink = sink
        self.partial = b""
        self.unsent = 0  # consumed bytes not yet handed back by a WINDOW_UPDATE
        self.head: asyncio.Future[int] = loop.create_future()
        self.done: asyncio.Future[Response] = loop.create_future()
        self.ended = False

    def fail(self, error: Exception) -> None:
        self.ended = True
        for future in (self.head, self.done):
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a failed abandoned stream is not an error


class H2Connection(asyncio.Protocol):
    """One HTTP/2 connection; requests and streams are multiplexed on it."""

    def __init__(self, endpoint: Endpoint, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.endpoint = endpoint
        self.extra_headers = [(k.lower().encode(), v.encode()) for k, v in headers]
        # the client's own cost matters (it is measured): no header validation of its own
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            validate_inbound_headers=False, normalize_outbound_headers=False,
            normalize_inbound_headers=False)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
        })
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, _Stream] = {}
        self.unsent = 0  # the connection's consumed bytes not yet handed back
        self.loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.settled: asyncio.Future[None] = self.loop.create_future()  # server SETTINGS in
        self.goaway: str = ""
        self.users = 0  # lanes sharing this connection
        self._flush_scheduled = False

    # -- asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        error = HTTPError(f"connection lost: {exc or self.goaway or 'closed by peer'}")
        for stream in self.streams.values():
            stream.fail(error)
        self.streams.clear()
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.settled.done():
            self.settled.set_exception(error)
            self.settled.exception()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.goaway = f"protocol error: {exc}"
            self._flush()
            if self.transport is not None:
                self.transport.close()
            return
        at = time.perf_counter()
        for event in events:
            self._event(event, at)
        self._flush()

    def _event(self, event: h2.events.Event, at: float) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._data(event, at)
        elif isinstance(event, h2.events.ResponseReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.status = int(dict(event.headers)[b":status"])
                if not stream.head.done():
                    stream.head.set_result(stream.status)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.ended = True
                if stream.sink is not None and stream.partial:
                    stream.sink([stream.partial], at)
                if not stream.done.done():
                    stream.done.set_result(Response(stream.status, bytes(stream.body)))
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.fail(HTTPError(f"stream reset by the server: {event.error_code!r}"))
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if not self.settled.done():
                self.settled.set_result(None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = f"GOAWAY {event.error_code!r} {event.additional_data or b''!r}"
            error = HTTPError(f"connection ended by the server: {self.goaway}")
            last = event.last_stream_id or 0
            for sid in [s for s in self.streams if s > last]:
                self.streams.pop(sid).fail(error)

    def _data(self, event: h2.events.DataReceived, at: float) -> None:
        length = event.flow_controlled_length
        # Go's transport hands consumed bytes back in WINDOW_UPDATEs of at least 4 KiB,
        # for the stream and for the connection alike.
        self.unsent += length
        if self.unsent >= MIN_REFRESH:
            self.h2.increment_flow_control_window(self.unsent)
            self.unsent = 0
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.unsent += length
        if stream.unsent >= MIN_REFRESH and not event.stream_ended:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.h2.increment_flow_control_window(stream.unsent, stream_id=event.stream_id)
            stream.unsent = 0
        if stream.sink is None:
            stream.body += event.data
            return
        data = event.data
        if stream.partial:
            data = stream.partial + data
        lines = data.split(b"\n")
        stream.partial = lines.pop()
        if lines:
            stream.sink(lines, at)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _flush_soon(self) -> None:
        """Write what h2 holds once this turn of the loop is over: requests issued in one
        turn by many workers go out in one write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self._flush()

    # -- requests

    @property
    def max_streams(self) -> int:
        """The server's MAX_CONCURRENT_STREAMS (h2's default, unlimited, is shown as 2**31)."""
        return int(self.h2.remote_settings.max_concurrent_streams)

    @property
    def open_streams(self) -> int:
        return len(self.streams)

    def _open(self, method: str, path: str, body: bytes | None, content_type: str,
              sink: LineSink | None) -> _Stream:
        if self.transport is None or self.closed.done():
            raise HTTPError(f"not connected{': ' + self.goaway if self.goaway else ''}")
        sid = self.h2.get_next_available_stream_id()
        headers = [(b":method", method.encode()), (b":path", path.encode()),
                   (b":scheme", b"https"), (b":authority", self.endpoint.authority.encode()),
                   (b"accept", b"application/json"), (b"user-agent", b"kext-bench-h2"),
                   *self.extra_headers]
        if body is not None:
            headers += [(b"content-type", content_type.encode()),
                        (b"content-length", str(len(body)).encode())]
        stream = _Stream(self.loop, sink)
        self.streams[sid] = stream
        self.h2.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)
        self._flush_soon()
        return stream

    async def request(self, method: str, path: str, body: bytes | None = None,
                      content_type: str = "application/json") -> Response:
        """Send one request on a new stream and return its status and whole body."""
        return await self._open(method, path, body, content_type, None).done

    async def stream(self, path: str, sink: LineSink, timeout: float = 30.0) -> _Stream:
        """GET path on a new stream and hand every line of its body to sink as it arrives;
        returns the stream once its head is in (HTTPError if none within timeout)."""
        stream = self._open("GET", path, None, "", sink)
        waiting: set[asyncio.Future[Any]] = {stream.head, stream.done}
        await asyncio.wait(waiting, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if not stream.head.done():
            raise HTTPError(f"no response head for GET {path} within {timeout:g}s")
        stream.head.result()
        return stream

    def reset(self, stream: _Stream) -> None:
        """Cancel a stream (RST_STREAM CANCEL), as Go does when a request's context ends."""
        for sid, s in list(self.streams.items()):
            if s is stream:
                del self.streams[sid]
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    self.h2.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                self._flush_soon()
                return

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            try:
                self.h2.close_connection()
                self._flush()
            except h2.exceptions.ProtocolError:
                pass
            self.transport.close()


class H2Lane:
    """A worker's view of a shared H2Connection: the interface of benchmarks.client's
    Connection (request, stream, ended, close), one stream at a time for stream()."""

    def __init__(self, connection: H2Connection) -> None:
        self.connection = connection
        connection.users += 1
        self._stream: _Stream | None = None
        self._closed = False

    async def request(self, method: str, path: str, body: bytes | None = None,
                      content_type: str = "application/json") -> Response:
        return await self.connection.request(method, path, body, content_type)

    async def stream(self, path: str, sink: LineSink, timeout: float = 30.0) -> int:
        try:
            self._stream = await self.connection.stream(path, sink, timeout)
        except HTTPError:
            raise
        stream = self._stream
        if stream.done.done() and not stream.done.exception():
            response = stream.done.result()
            if response.status != 200:
                sink([response.body], time.perf_counter())
        return stream.status

    @property
    def ended(self) -> bool:
        if self.connection.closed.done():
            return True
        return self._stream is not None and self._stream.ended

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream is not None and not self._stream.ended:
            self.connection.reset(self._stream)
        self.connection.users -= 1
        if self.connection.users <= 0:
            self.connection.close()

    async def wait_closed(self) -> None:
        await self.connection.closed


async def connect(endpoint: Endpoint, headers: Sequence[tuple[str, str]] = (),
                  timeout: float = 30.0) -> H2Connection:
    """One HTTP/2 connection, its TLS handshake done and the server's SETTINGS in."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: H2Connection(endpoint, headers), endpoint.host, endpoint.port,
        ssl=endpoint.ssl, server_hostname=endpoint.host)
    transport = protocol.transport
    assert transport is not None
    negotiated = transport.get_extra_info("ssl_object").selected_alpn_protocol()
    if negotiated != "h2":
        protocol.close()
        raise HTTPError(f"the server did not agree to HTTP/2 (ALPN: {negotiated})")
    await asyncio.wait_for(asyncio.shield(protocol.settled), timeout)
    return protocol


async def open_lanes(endpoint: Endpoint, n: int, pool: int,
                     headers: Sequence[tuple[str, str]] = ()) -> list[H2Lane]:
    """n lanes over a pool of connections, as Go's transport pools them: `pool` connections
    (at most n), or more when the server's MAX_CONCURRENT_STREAMS would not let them carry
    n streams; lane i uses connection i mod the pool's size."""
    first = await connect(endpoint, headers)
    per_connection = max(1, first.max_streams)
    count = max(min(n, pool), math.ceil(n / per_connection))
    rest = await asyncio.gather(*(connect(endpoint, headers) for _ in range(count - 1)))
    connections = [first, *rest]
    return [H2Lane(connections[i % count]) for i in range(n)]
