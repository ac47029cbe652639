"""kext's HTTP/2 server connection: the `h2` state machine driven from a Twisted protocol
on the TLS transport, serving APIRequests through the handler chain as the HTTP/1.1 layer
(http.py) does.

Why not twisted.web's H2Connection: it recomputes every stream's window on each write,
walks every stream of the connection on a connection-level WINDOW_UPDATE, sends one DATA
frame per connection per reactor turn, advertises MAX_CONCURRENT_STREAMS 100 and answers a
stream past it with a connection-level GOAWAY (which kills every stream of the connection);
with 1,000 watch streams multiplexed on a few connections (the aggregator's path) that was
most of kext's CPU (benchmarks/README.md). Here every frame costs O(1):

- Streams past the advertised limit (kube's aggregated-server default, 1000) are refused
  one by one with RST_STREAM REFUSED_STREAM (RFC 9113 §5.1.2), the others untouched.
- Outbound flow control: a stream writes while its window allows; what does not fit waits
  on that stream alone (its producer paused), and a WINDOW_UPDATE looks only at the streams
  waiting for it.
- Frames are batched: whatever the connection's streams write in one reactor turn goes out
  in one write to the TLS transport at the end of the turn.
- Inbound: large windows (256 KiB per stream, 256 MiB per connection, as kube's
  MaxUploadBufferPerStream times streams), handed back by h2 once half is consumed.
- A protocol error (a malformed header block, ...) is answered with GOAWAY and the
  connection is closed; after the client's GOAWAY the connection closes once its streams
  are done.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from kext.api import errors
from kext.server.http import peer_certificates
from kext.server.request import (
    APIRequest,
    Handler,
    Producer,
    Response,
    StreamResponse,
    status_response,
)
from kext.server.request_info import parse_request_info

log = logging.getLogger(__name__)

# kube's aggregated API servers (RecommendedOptions: HTTP2MaxStreamsPerConnection = 1000;
# Go's own default is 250): the aggregator multiplexes many watches on one connection.
MAX_CONCURRENT_STREAMS = 1000
STREAM_WINDOW = 256 * 1024  # kube's MaxUploadBufferPerStream (resourceBody99Percentile)
MAX_FRAME_SIZE = 256 * 1024  # kube's MaxReadFrameSize
# The connection's window: STREAM_WINDOW per stream (kube's MaxUploadBufferPerConnection).
_H2_DEFAULT_WINDOW = 65535
# A stream's writes held (its window exhausted) beyond this pause its producer.
_HELD_BYTES_PAUSE = 64 * 1024
_UNLIMITED = 2**31 - 1


class _Stream:
    """One request/response exchange on the connection, and its ChunkWriter when it
    streams."""

    __slots__ = (
        "body",
        "ended_remote",
        "finished",
        "headers",
        "held",
        "held_bytes",
        "id",
        "producer",
        "received",
        "task",
        "too_large",
    )

    def __init__(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.id = stream_id
        self.headers = headers
        self.body: list[bytes] = []
        self.received = 0  # body bytes so far
        self.too_large = False
        self.held: deque[tuple[bytes, bool]] = deque()  # (data, end_stream) not sent yet
        self.held_bytes = 0
        self.producer: Producer | None = None
        self.task: asyncio.Task[None] | None = None
        self.ended_remote = False
        self.finished = False  # our side is done (END_STREAM queued)


class _StreamWriter:
    """A streaming response's ChunkWriter: each chunk one DATA frame (or more, past the
    peer's frame size) on its stream."""

    def __init__(self, connection: H2Protocol, stream: _Stream) -> None:
        self.connection, self.stream = connection, stream

    def write(self, chunk: bytes) -> None:
        if not self.stream.finished and chunk:
            self.connection.send_data(self.stream, chunk)

    def set_producer(self, producer: Producer) -> None:
        self.stream.producer = producer
        if self.stream.held_bytes > _HELD_BYTES_PAUSE:
            producer.pause()


class H2Protocol(Protocol):
    """One HTTP/2 connection (after ALPN chose h2): requests in, responses out."""

    def __init__(self, handler: Handler, max_body_bytes: int,
                 max_streams: int = MAX_CONCURRENT_STREAMS) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.max_streams = max_streams
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.streams: dict[int, _Stream] = {}
        self.blocked: dict[int, _Stream] = {}  # streams with writes waiting for window
        self.peer_chain: list[bytes] = []
        self.remote = ""
        self.closing = False  # GOAWAY sent or received: close once the streams are done
        self._flush_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- connection

    def connectionMade(self) -> None:
        transport: Any = self.transport
        # what this connection's client presented: read once, not on every request
        self.peer_chain = peer_certificates(transport)
        peer = transport.getPeer()
        self.remote = getattr(peer, "host", "")
        self._loop = asyncio.get_event_loop()
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
        })
        self.h2.initiate_connection()
        # h2 would answer a stream past the limit it enforces with GOAWAY: it enforces none
        # (this connection refuses such a stream itself) while the peer is told the limit.
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _UNLIMITED,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
        })
        self.h2.increment_flow_control_window(
            STREAM_WINDOW * self.max_streams - _H2_DEFAULT_WINDOW)
        transport.registerProducer(self, True)
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued the GOAWAY: send it, and close (every stream ends with it)
            log.info("HTTP/2 protocol error from %s: %s; closing the connection",
                     self.remote, exc)
            self._flush()
            self._close()
            return
        for event in events:
            self._event(event)
        self._flush()

    def connectionLost(self, reason: Failure | None = None) -> None:
        streams, self.streams = self.streams, {}
        self.blocked.clear()
        for stream in streams.values():
            stream.finished = True
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()

    def _close(self) -> None:
        self.closing = True
        transport: Any = self.transport
        if transport is not None:
            transport.loseConnection()

    # -- frames in

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None and not stream.ended_remote:
                stream.ended_remote = True
                self._dispatch(stream)
        elif isinstance(event, h2.events.StreamReset):
            self._forget(event.stream_id)
        elif isinstance(event, h2.events.WindowUpdated):
            self._window_opened(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                self._window_opened(0)
        elif isinstance(event, h2.events.ConnectionTerminated):
            # the client's GOAWAY: no new streams; close once the last one is done
            self.closing = True
            if event.error_code != h2.errors.ErrorCodes.NO_ERROR or not self.streams:
                self._close()

    def _request(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id
        if len(self.streams) >= self.max_streams or self.closing:
            # past the limit the peer was told: refuse this stream only (it may retry it)
            self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(sid, list(event.headers or ()))
        self.streams[sid] = stream
        for name, value in stream.headers:
            if name == b"content-length" and value.isdigit() \
                    and int(value) > self.max_body_bytes:
                stream.too_large = True
        if event.stream_ended is not None:
            stream.ended_remote = True
            self._dispatch(stream)

    def _data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
        stream = self.streams.get(sid)
        if stream is None or stream.too_large or event.data is None:
            return
        stream.body.append(event.data)
        stream.received += len(event.data)
        if stream.received > self.max_body_bytes:
            stream.too_large = True
            stream.body.clear()
            # answer at once, as the HTTP/1.1 layer does; the upload is stopped once the
            # answer is out (_done)
            self._dispatch(stream)

    def _forget(self, stream_id: int) -> None:
        stream = self.streams.pop(stream_id, None)
        self.blocked.pop(stream_id, None)
        if stream is not None:
            stream.finished = True
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()  # the client went away: a watch stops at once
        if self.closing and not self.streams:
            self._close()

    # -- requests

    def _dispatch(self, stream: _Stream) -> None:
        if stream.task is not None:
            return
        stream.task = asyncio.ensure_future(self._serve(stream))

    def _api_request(self, stream: _Stream) -> APIRequest:
        method = path = authority = ""
        raw: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        for name_b, value_b in stream.headers:
            name, value = name_b.decode("latin-1"), value_b.decode("latin-1")
            if name[0] == ":":
                if name == ":method":
                    method = value
                elif name == ":path":
                    path = value
                elif name == ":authority":
                    authority = value
                continue
            raw.append((name, value))
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        if authority and "host" not in headers:
            headers["host"] = authority
            raw.append(("host", authority))
        split_path, _, query_string = path.partition("?")
        query = _parse_query(query_string)
        return APIRequest(
            method=method, path=split_path, query=query, headers=headers,
            body=b"".join(stream.body), info=parse_request_info(method, split_path, query),
            peer_certificates=self.peer_chain, raw_headers=raw, remote=self.remote, uri=path,
        )

    async def _serve(self, stream: _Stream) -> None:
        request = self._api_request(stream)
        try:
            if stream.too_large:
                response: Response | StreamResponse = status_response(
                    errors.request_entity_too_large(f"limit is {self.max_body_bytes}"))
            else:
                response = await self.handler(request)
            if isinstance(response, StreamResponse):
                self._start(stream, response, streaming=True)
                if stream.finished:  # the client went away meanwhile
                    response.ended()
                    return
                try:
                    await response.serve(_StreamWriter(self, stream))
                except Exception:
                    log.exception("watch stream for %s ended by an error", request.path)
                self.send_data(stream, b"", end_stream=True)
            else:
                self._write(stream, response, head=request.method == "HEAD")
        except asyncio.CancelledError:
            return  # the client went away
        except Exception:
            log.exception("unhandled error serving %s", request.path)
            if not stream.finished:
                self._write(stream, status_response(
                    errors.internal_error("unexpected server error")))

    def _start(self, stream: _Stream, response: Response | StreamResponse,
               streaming: bool = False, length: int | None = None) -> None:
        if stream.finished or stream.id not in self.streams:
            return
        headers = [(b":status", str(response.code).encode()),
                   (b"content-type", response.content_type.encode())]
        if streaming:
            headers.append((b"cache-control", b"no-cache, private"))
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        headers.extend((k.lower().encode(), v.encode()) for k, v in response.headers)
        try:
            self.h2.send_headers(stream.id, headers)
        except h2.exceptions.StreamClosedError:
            self._forget(stream.id)
            return
        self._flush_soon()

    def _write(self, stream: _Stream, response: Response, head: bool = False) -> None:
        self._start(stream, response, length=len(response.body))
        self.send_data(stream, b"" if head else response.body, end_stream=True)

    # -- frames out

    def send_data(self, stream: _Stream, data: bytes, end_stream: bool = False) -> None:
        """Queue data on stream (split to the peer's frame size); what its window does not
        allow now waits for a WINDOW_UPDATE, pausing the stream's producer."""
        if stream.finished or stream.id not in self.streams:
            return
        if end_stream:
            stream.finished = True
        if stream.held:
            self._hold(stream, data, end_stream)
            return
        self._send_now(stream, data, end_stream)
        self._flush_soon()

    def _send_now(self, stream: _Stream, data: bytes, end_stream: bool) -> None:
        h2c = self.h2
        sid = stream.id
        size = h2c.max_outbound_frame_size
        view = memoryview(data)  # a large body is cut into frames without copying it whole
        at, end = 0, len(data)
        try:
            while True:
                window = h2c.local_flow_control_window(sid)
                left = end - at
                if left <= window and left <= size:
                    h2c.send_data(sid, data if at == 0 else bytes(view[at:]),
                                  end_stream=end_stream)
                    break
                take = min(window, size)
                if take <= 0:
                    self._hold(stream, bytes(view[at:]), end_stream)
                    return
                h2c.send_data(sid, bytes(view[at:at + take]))
                at += take
        except h2.exceptions.StreamClosedError:
            self._forget(sid)
            return
        if end_stream:
            self._done(stream)

    def _hold(self, stream: _Stream, data: bytes, end_stream: bool) -> None:
        stream.held.append((data, end_stream))
        stream.held_bytes += len(data)
        self.blocked[stream.id] = stream
        if stream.held_bytes > _HELD_BYTES_PAUSE and stream.producer is not None:
            stream.producer.pause()

    def _window_opened(self, stream_id: int) -> None:
        if stream_id:
            stream = self.blocked.get(stream_id)
            candidates = [stream] if stream is not None else []
        else:
            candidates = list(self.blocked.values())  # only those waiting for window
        for stream in candidates:
            self.blocked.pop(stream.id, None)
            held, stream.held = stream.held, deque()
            stream.held_bytes = 0
            while held:
                data, end = held.popleft()
                if stream.held:  # the window closed again: keep the order
                    self._hold(stream, data, end)
                    continue
                self._send_now(stream, data, end)
            if not stream.held and stream.producer is not None and not stream.finished:
                stream.producer.resume()
        self._flush_soon()

    def _done(self, stream: _Stream) -> None:
        """Our side of stream is complete. A client still sending (a body past the limit)
        is told to stop with RST_STREAM NO_ERROR after the response (RFC 9113 §8.1)."""
        if not stream.ended_remote and stream.too_large:
            self.h2.reset_stream(stream.id, h2.errors.ErrorCodes.NO_ERROR)
            stream.ended_remote = True
        if stream.ended_remote:
            self.streams.pop(stream.id, None)
            self.blocked.pop(stream.id, None)
        if self.closing and not self.streams:
            self._flush()
            self._close()

    def _flush_soon(self) -> None:
        """One write of everything queued this turn, at the end of the turn."""
        if not self._flush_pending and self._loop is not None:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self.h2.data_to_send()
        transport: Any = self.transport
        if data and transport is not None:
            transport.write(data)

    # -- the transport's push producer interface (its send buffer)

    def pauseProducing(self) -> None:
        for stream in self.streams.values():
            if stream.producer is not None:
                stream.producer.pause()

    def resumeProducing(self) -> None:
        for stream in list(self.streams.values()):
            if stream.producer is not None and not stream.held and not stream.finished:
                stream.producer.resume()

    def stopProducing(self) -> None:
        self._close()


def _parse_query(query_string: str) -> dict[str, list[str]]:
    return parse_qs(query_string, keep_blank_values=True) if query_string else {}


@implementer(IHandshakeListener)
class _ByALPN(Protocol):
    """The protocol of a TLS connection, which HTTP it speaks told by the handshake: h2 gets
    kext's H2Protocol, anything else the HTTP/1.1 protocol the site builds. The HTTP/1.1
    one is connected from the start (its header timeout covers a client that never
    completes the handshake), and let go when the handshake chose h2."""

    def __init__(self, http1: Protocol, h2_protocol: H2Protocol) -> None:
        self.http1, self.h2_protocol = http1, h2_protocol
        self.chosen: Protocol | None = None

    def connectionMade(self) -> None:
        self.http1.makeConnection(self.transport)

    def handshakeCompleted(self) -> None:
        transport: Any = self.transport
        if getattr(transport, "negotiatedProtocol", None) == b"h2":
            transport.unregisterProducer()  # the HTTP/1.1 channel registered itself
            self.http1.connectionLost(Failure(ConnectionDone("the connection speaks HTTP/2")))
            self.chosen = self.h2_protocol
            self.chosen.makeConnection(transport)
        else:
            self.chosen = self.http1

    def dataReceived(self, data: bytes) -> None:
        if self.chosen is None:
            self.chosen = self.http1
        self.chosen.dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        (self.chosen or self.http1).connectionLost(reason or Failure(ConnectionDone()))


class ServingFactory(Factory):
    """The HTTPS listener's protocol factory (under TLS): kext's HTTP/2 for connections that
    chose h2 by ALPN, the twisted.web site's HTTP/1.1 channel for the others."""

    def __init__(self, site: Any, handler: Handler, max_body_bytes: int) -> None:
        self.site, self.handler, self.max_body_bytes = site, handler, max_body_bytes
        self.noisy = False

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        http1: Protocol = self.site.buildProtocol(addr)
        return _ByALPN(http1, H2Protocol(self.handler, self.max_body_bytes))

    def doStart(self) -> None:
        self.site.doStart()

    def doStop(self) -> None:
        self.site.doStop()
