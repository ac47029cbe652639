"""A minimal HTTP/1.1 keep-alive client on asyncio, made to generate load cheaply.

One `Connection` is one TCP (optionally TLS) connection carrying one request at a time; a
load of concurrency c is c connections, each driven by its own coroutine. The parser does
only what the benchmark needs (status, Content-Length and chunked bodies, and a streaming
mode that hands each newline-delimited watch event to a callback with its arrival time), so
the client costs a fraction of what aiohttp costs per request: measured in the README.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# Called with the complete lines (watch events) of one read and the time they arrived.
LineSink = Callable[[list[bytes], float], None]


class HTTPError(Exception):
    """The connection broke or the response could not be parsed."""


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: host, port and the TLS context (None for plain HTTP)."""

    host: str
    port: int
    ssl: ssl.SSLContext | None

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


def client_ssl_context(ca_file: str, cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """A TLS client context trusting ca_file and presenting cert_file/key_file if given."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


@dataclass
class Response:
    status: int
    body: bytes


class _Protocol(asyncio.Protocol):
    """The parser behind a Connection: one response at a time, fed by data_received."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Response state: -1 before the head is parsed.
        self.status = -1
        self.length = -1  # Content-Length, or -1 when chunked
        self.chunked = False
        self.body = bytearray()
        self.chunk_left = 0  # bytes left in the current chunk (+2 for its CRLF)
        self.stream: LineSink | None = None
        self.head: asyncio.Future[int] | None = None  # set when a streamed response's head is in
        self.stream_ended = False  # a streamed response's body is complete
        self.partial = b""  # an incomplete line of a streamed body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HTTPError(f"connection lost: {exc or 'closed by peer'}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None:
            return
        try:
            self._parse()
        except Exception as exc:  # a parse error ends the request, not the event loop
            if not self.waiter.done():
                self.waiter.set_exception(HTTPError(f"bad response: {exc}"))

    def _parse(self) -> None:
        buffer = self.buffer
        if self.status < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            del buffer[: end + 4]
            self.status = int(head[9:12])
            self.chunked = b"\r\ntransfer-encoding: chunked" in head
            self.length = -1
            if not self.chunked:
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise HTTPError("response without Content-Length or chunked encoding")
                line_end = head.find(b"\r\n", at + 2)
                self.length = int(head[at + 17 : line_end if line_end > 0 else None])
            self.body = bytearray()
            self.chunk_left = 0
            if self.head is not None and not self.head.done():
                self.head.set_result(self.status)
        if not self.chunked:
            if len(buffer) >= self.length:
                body = bytes(buffer[: self.length])
                del buffer[: self.length]
                self._finish(body)
            return
        self._parse_chunks()

    def _parse_chunks(self) -> None:
        buffer = self.buffer
        while True:
            if self.chunk_left == 0:
                line_end = buffer.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
                del buffer[: line_end + 2]
                if size == 0:
                    if len(buffer) < 2:  # the final CRLF (no trailers are sent to us)
                        buffer[:0] = b"0\r\n"
                        return
                    del buffer[:2]
                    self._finish(bytes(self.body))
                    return
                self.chunk_left = size + 2
            take = min(self.chunk_left, len(buffer))
            if take == 0:
                return
            payload = min(take, self.chunk_left - 2)  # the chunk's trailing CRLF is not data
            data = bytes(buffer[:payload]) if payload > 0 else b""
            del buffer[:take]
            self.chunk_left -= take
            if self.stream is not None:
                self._emit(data)
            else:
                self.body += data

    def _emit(self, data: bytes) -> None:
        """Hand the complete lines of a streamed body to the sink."""
        assert self.stream is not None
        if not data:
            return
        data = self.partial + data if self.partial else data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if lines:
            self.stream(lines, time.perf_counter())

    def _finish(self, body: bytes) -> None:
        if self.stream is not None:
            self.stream_ended = True
        waiter, self.waiter = self.waiter, None
        status, self.status = self.status, -1
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(status, body))


class Connection:
    """One keep-alive HTTP/1.1 connection; `request()` sends and awaits one response."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._protocol: _Protocol | None = None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            _Protocol, self.endpoint.host, self.endpoint.port, ssl=self.endpoint.ssl,
            server_hostname=self.endpoint.host if self.endpoint.ssl else None,
        )
        self._protocol = protocol

    def _send(self, method: str, path: str, body: bytes | None, content_type: str) -> _Protocol:
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.closed.done():
            raise HTTPError("not connected")
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.endpoint.authority}\r\n"
        head += "Accept: application/json\r\n"
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        data = (head + "\r\n").encode()
        protocol.waiter = asyncio.get_running_loop().create_future()
        protocol.transport.write(data + body if body else data)
        return protocol

    async def request(self, method: str, path: str, body: bytes | None = None,
                      content_type: str = "application/json") -> Response:
        """Send one request and return its status and whole body."""
        protocol = self._send(method, path, body, content_type)
        assert protocol.waiter is not None
        if protocol.buffer:  # bytes already arrived (only possible after a stream)
            protocol._parse()
        return await protocol.waiter

    async def stream(self, path: str, sink: LineSink, timeout: float = 30.0) -> int:
        """GET path and hand every line of its chunked body to sink as it arrives.

        Returns the status once the head has arrived; the body keeps flowing to sink until
        the connection is closed (or the server ends the body). A non-200 status or a body
        that is not chunked is read whole and handed to sink at once."""
        protocol = self._send("GET", path, None, "")
        protocol.stream = sink
        head = protocol.head = asyncio.get_running_loop().create_future()
        waiter = protocol.waiter
        assert waiter is not None
        await asyncio.wait({head, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            response = waiter.result()
            sink([response.body], time.perf_counter())
            return response.status
        if not head.done():
            raise HTTPError(f"no response head for GET {path} within {timeout:g}s")
        status: int = head.result()
        return status

    @property
    def ended(self) -> bool:
        """Whether the server ended the (streamed) response or closed the connection."""
        protocol = self._protocol
        return protocol is None or protocol.closed.done() or protocol.stream_ended

    def close(self) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        if protocol.waiter is not None and not protocol.waiter.done():
            protocol.waiter.cancel()  # nobody waits for the end of an abandoned stream
        if protocol.transport is not None:
            protocol.transport.close()

    async def wait_closed(self) -> None:
        if self._protocol is not None:
            await self._protocol.closed


async def open_connections(endpoint: Endpoint, n: int, parallel: int = 32) -> list[Connection]:
    """n connected Connections (TLS handshakes done), opened parallel at a time."""
    connections = [Connection(endpoint) for _ in range(n)]
    gate = asyncio.Semaphore(parallel)

    async def connect(connection: Connection) -> None:
        async with gate:
            await connection.connect()

    await asyncio.gather(*(connect(c) for c in connections))
    return connections


class Closable(Protocol):
    def close(self) -> None: ...


def close_all(connections: Sequence[Closable]) -> None:
    for connection in connections:
        connection.close()
