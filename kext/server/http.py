"""Twisted glue: turn a twisted.web request into an APIRequest, run the handler chain and write
its Response or StreamResponse back (HTTP/1.1 and HTTP/2 alike)."""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from OpenSSL import crypto
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.resource import Resource

from kext.api import errors
from kext.server.request import (
    APIRequest,
    Handler,
    Producer,
    Response,
    StreamResponse,
    status_response,
)
from kext.server.request_info import parse_request_info

log = logging.getLogger("kext.httplog")


class KextRequest(server.Request):
    """A twisted.web Request that stops buffering a body past the configured limit."""

    max_body_bytes = 3 * 1024 * 1024
    body_too_large = False
    _received = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # twisted.web parses the Content-Type of every POST (through the stdlib's email
        # header registry: 7 % of a create's CPU) to decode HTML form bodies, which kext
        # never reads; this is its switch for that (set per request by Request.__init__).
        self._parsePOSTFormSubmission = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_bytes:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.max_body_bytes:
            self.body_too_large = True
            return
        if not self.body_too_large:
            super().handleContentChunk(data)


def _peer_certificates(request: server.Request) -> list[bytes]:
    """The client's certificate chain as DER, from the TLS connection under HTTP/1.1 or /2."""
    channel = request.channel
    transport = getattr(channel, "transport", None)
    if transport is None:  # HTTP/2: the stream's connection holds the TLS transport
        conn = getattr(channel, "_conn", None)
        transport = getattr(conn, "transport", None)
    return peer_certificates(transport)


def peer_certificates(transport: Any) -> list[bytes]:
    """The certificate chain (DER, leaf first) the client presented on a TLS transport; []
    when there is none (or the transport is not TLS)."""
    tls = getattr(transport, "getHandle", None)
    if tls is None:
        return []
    connection = tls()
    try:
        # On the server side OpenSSL's peer chain leaves out the leaf: ask for it first.
        leaf = connection.get_peer_certificate()
        chain = connection.get_peer_cert_chain() or []
    except (AttributeError, TypeError):  # not a TLS connection (in-memory tests)
        return []
    if leaf is None:
        return []
    der = [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in [leaf, *chain]]
    return [der[0], *[c for c in der[1:] if c != der[0]]]


class APIResource(Resource):
    """The single twisted.web resource: every path goes through the handler chain."""

    isLeaf = True

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self._handler = handler

    def render(self, request: server.Request) -> Any:
        # Handlers await asyncio futures (aetcd), so they run as asyncio tasks, not as
        # Deferred-driven coroutines.
        task = asyncio.ensure_future(self._serve(request))
        defer.Deferred.fromFuture(task).addErrback(self._crash, request)
        # A client that goes away cancels its request (a watch stops at once, as kube's
        # handlers stop when the request context ends).
        request.notifyFinish().addErrback(lambda _: task.cancel())
        return server.NOT_DONE_YET

    def _crash(self, failure: Failure, request: server.Request) -> None:
        if failure.check(defer.CancelledError, asyncio.CancelledError):
            return  # the client went away
        log.error("unhandled error serving %s: %s", request.uri, failure.getTraceback())
        if not request.finished and not request.startedWriting:
            _write(request, status_response(errors.internal_error("unexpected server error")))

    async def _serve(self, request: server.Request) -> None:
        # (each request's log line is the filter chain's: kext.server.filters)
        api_request = _to_api_request(request)
        if isinstance(request, KextRequest) and request.body_too_large:
            response: Response | StreamResponse = status_response(
                errors.request_entity_too_large(f"limit is {request.max_body_bytes}")
            )
        else:
            response = await self._handler(api_request)
        if isinstance(response, StreamResponse):
            await _stream(request, response)
        else:
            _write(request, response)


def _to_api_request(request: server.Request) -> APIRequest:
    uri = request.uri.decode("latin-1")
    split = urlsplit(uri)
    query = parse_qs(split.query, keep_blank_values=True)
    raw_headers: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        key = name.decode("latin-1").lower()
        decoded = [v.decode("latin-1") for v in values]
        raw_headers.extend((key, v) for v in decoded)
        headers[key] = ",".join(decoded)
    body = b""
    if request.content is not None and not getattr(request, "body_too_large", False):
        request.content.seek(0)
        body = request.content.read()
    method = request.method.decode("latin-1")
    peer = request.getClientAddress()
    return APIRequest(
        method=method,
        path=split.path,
        query=query,
        headers=headers,
        body=body,
        info=parse_request_info(method, split.path, query),
        peer_certificates=_peer_certificates(request),
        raw_headers=raw_headers,
        remote=getattr(peer, "host", ""),
        uri=uri,
    )


# Standard reason phrases for the HTTP/1.1 status line: twisted's table lacks some that kube
# answers with (422 Unprocessable Entity, 429 Too Many Requests) and says "Unknown Status".
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def _write(request: server.Request, response: Response) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    _start(request, response)
    if request.method != b"HEAD":
        request.setHeader(b"Content-Length", str(len(response.body)).encode())
        request.write(response.body)
    request.finish()


def _start(request: server.Request, response: Response | StreamResponse) -> None:
    """Status code and headers (values UTF-8: Warning texts may name any field)."""
    request.setResponseCode(response.code, _REASONS.get(response.code))
    request.setHeader(b"Content-Type", response.content_type.encode())
    for name, value in response.headers:
        request.responseHeaders.addRawHeader(name.encode(), value.encode())


async def _stream(request: server.Request, response: StreamResponse) -> None:
    _start(request, response)
    request.setHeader(b"Cache-Control", b"no-cache, private")
    if getattr(request, "_disconnected", False):
        response.ended()
        return
    writer = _RequestWriter(request)
    request.notifyFinish().addBoth(writer.closed)
    # Send the status line and headers now: a watcher learns its watch is established
    # before the first event, as kube-apiserver flushes them.
    request.write(b"")
    request.registerProducer(writer, True)
    try:
        await response.serve(writer)
    except Exception:
        # The stream is already under way: end it, so the client re-watches.
        log.exception("watch stream for %s ended by an error", request.uri)
    if not writer.is_closed:
        request.unregisterProducer()
        request.finish()


class _RequestWriter:
    """A streaming response's ChunkWriter on a twisted.web request (one chunk of the
    chunked body per write), registered as the request's push producer: the transport
    pauses it when its send buffer is full (HTTP/1.1 socket or HTTP/2 window)."""

    def __init__(self, request: server.Request) -> None:
        self.request = request
        self.is_closed = False
        self.producer: Producer | None = None
        self.paused = False

    def write(self, chunk: bytes) -> None:
        if not self.is_closed:
            self.request.write(chunk)

    def set_producer(self, producer: Producer) -> None:
        self.producer = producer
        if self.paused:
            producer.pause()

    def pauseProducing(self) -> None:
        self.paused = True
        if self.producer is not None:
            self.producer.pause()

    def resumeProducing(self) -> None:
        self.paused = False
        if self.producer is not None and not self.is_closed:
            self.producer.resume()

    def stopProducing(self) -> None:
        self.closed(None)

    def closed(self, _: object) -> None:
        self.is_closed = True


# -- the HTTP/1.1 connection, with Go's net/http limits (kube serves with MaxHeaderBytes 1 MiB
# and ReadHeaderTimeout 32 s: apiserver pkg/server/secure_serving.go)

MAX_HEADER_BYTES = 1 << 20
# Go reads MaxHeaderBytes plus 4096 bytes of bufio slop before it answers 431
# (net/http server.go initialReadLimitSize), and at most 500 header lines
# (DefaultMaxHeaderValueCount).
_HEADER_READ_LIMIT = MAX_HEADER_BYTES + 4096
MAX_HEADER_LINES = 500
READ_HEADER_TIMEOUT_SECONDS = 32.0
IDLE_TIMEOUT_SECONDS = 90.0  # kube's http.Server IdleTimeout, between keep-alive requests
# After refusing a request Go half-closes and waits 500 ms (closeWriteAndWait), so a client
# still sending reads the answer instead of a reset.
_LINGER_SECONDS = 0.5

_TEXT = b"text/plain; charset=utf-8"


class KextChannel(HTTPChannel):
    """Twisted's HTTP/1.1 channel answering malformed or oversized requests as Go's server
    does: request lines end at LF (a CR before it is dropped, a bare CR is refused); header
    blocks past 1 MiB (+4 KiB) or 500 lines get 431; a Content-Length past the body limit
    gets 413 at once, without waiting for the body; other framing errors get 400; each of
    these with a body saying so and the connection closed. A connection that has not sent a
    request's headers within read_header_timeout is closed without an answer, as is a
    keep-alive connection idle for IDLE_TIMEOUT_SECONDS."""

    delimiter = b"\n"
    MAX_LENGTH = _HEADER_READ_LIMIT
    totalHeadersSize = _HEADER_READ_LIMIT
    maxHeaders = MAX_HEADER_LINES
    read_header_timeout = READ_HEADER_TIMEOUT_SECONDS
    max_body_bytes = 3 * 1024 * 1024

    _deadline: Any = None  # the IDelayedCall closing a connection that keeps us waiting
    _in_headers = True
    _header_bytes = 0
    _refused = False
    _closing: Any = None
    _lost = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._set_deadline(self.read_header_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: what the client still sends is dropped
        if self._in_headers and self._deadline_kind == "idle":
            self._set_deadline(self.read_header_timeout)  # a request has begun
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> Any:
        self._header_bytes += len(line) + 1
        if self._header_bytes > _HEADER_READ_LIMIT:
            return self._refuse_headers()
        if line.endswith(b"\r"):
            line = line[:-1]
        super().lineReceived(line)
        return self._refused  # stops LineReceiver from reading on after a refusal

    def lineLengthExceeded(self, line: bytes) -> Any:
        return self._refuse_headers()

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:
            self._refuse_headers()
            return False
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        value = value.strip(b" \t")
        if name == b"content-length" and value.isdigit():
            if int(value) >= 2**63:  # Go: not an int64, so not a length
                self._respondToBadRequestAndDisconnect()
                return False
            if int(value) > self.max_body_bytes:
                self._refuse_body()
                return False
        if name == b"transfer-encoding" and value.lower() not in (b"chunked", b"identity"):
            self._refuse(b"501 Not Implemented", b"Unsupported transfer encoding")
            return False
        ok: bool = super().headerReceived(line)
        return ok

    def rawDataReceived(self, data: bytes) -> None:
        super().rawDataReceived(data)
        if self._refused or self._handlingRequest or not self.requests:
            return
        # A chunked body past the limit is refused as soon as it is (or a chunk announces
        # it will be), as a Content-Length past it is.
        decoder = self._transferDecoder
        announced = getattr(decoder, "length", 0) if getattr(decoder, "state", "") == "BODY" \
            else 0
        if getattr(self.requests[-1], "body_too_large", False) or (
                isinstance(announced, int) and announced > self.max_body_bytes):
            self._refuse_body()

    def allHeadersReceived(self) -> None:
        self._clear_deadline()
        self._in_headers = False
        self._header_bytes = 0
        request = self.requests[-1]
        if self._version == b"HTTP/1.1" and not request.requestHeaders.hasHeader(b"host"):
            self._refuse(b"400 Bad Request: missing required Host header")
            return  # _refuse set a length: HTTPChannel waits for a body that is never read
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        self._in_headers = True
        self._set_deadline(IDLE_TIMEOUT_SECONDS, "idle")
        super().requestDone(request)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self._lost = True
        self._clear_deadline()
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        super().connectionLost(reason)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's one answer to a malformed request line, header, length or chunk
        self._refuse(b"400 Bad Request")

    # -- answers and deadlines

    def _refuse_headers(self) -> bool:
        self._refuse(b"431 Request Header Fields Too Large")
        return True

    def _refuse_body(self) -> None:
        error = errors.request_entity_too_large(f"limit is {self.max_body_bytes}")
        body = status_response(error).body
        self._refuse(b"413 Request Entity Too Large", body, b"application/json")

    def _refuse(self, status: bytes, body: bytes | None = None,
                content_type: bytes = _TEXT) -> None:
        """Answer status (with body, by default the status itself) and close, as Go's
        server does for a request it cannot read."""
        if self._refused:
            return
        self._refused = True
        self._clear_deadline()
        text = status if body is None else body
        transport: Any = self.transport
        transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: " + str(len(text)).encode()
            + b"\r\nConnection: close\r\n\r\n" + text)
        self.clearLineBuffer()
        self.length = 1  # nothing more is read: no request is dispatched
        self._closing = self.callLater(_LINGER_SECONDS, self._close)

    def _close(self) -> None:
        # Closed outright: a TLS close would wait for the peer's close_notify, and a peer
        # that never sends one would hold the connection (the answer went out 500 ms ago).
        transport: Any = self.transport
        if self._closing is not None and transport is not None and not self._lost:
            transport.abortConnection()
        self._closing = None

    _deadline_kind = ""

    def _set_deadline(self, seconds: float, kind: str = "header") -> None:
        self._clear_deadline()
        self._deadline_kind = kind
        if seconds > 0:
            self._deadline = self.callLater(seconds, self._deadline_passed)

    def _clear_deadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None
        self._deadline_kind = ""

    def _deadline_passed(self) -> None:
        self._deadline = None
        if getattr(self.transport, "negotiatedProtocol", None) == b"h2":
            return  # HTTP/2 took this connection over: its own channel times it out
        log.info("closing a connection that sent no request headers in time")
        self.timeoutConnection()


class _Site(server.Site):
    """A Site whose HTTP/1.1 connections are KextChannels (HTTP/2 is kext's own: h2.py),
    without twisted.web's own access log (the filter chain writes kext's request line;
    twisted's formatting of one more cost as much again)."""

    channel = KextChannel

    def log(self, request: Any) -> None:
        pass

    def protocol(self) -> Any:
        # Twisted picks HTTP/1.1 or HTTP/2 after the TLS handshake in its private
        # _GenericHTTPChannelProtocol; this is the one place kext builds one.
        return _GenericHTTPChannelProtocol(self.channel())


def make_site(handler: Handler, max_body_bytes: int,
              read_header_timeout: float = READ_HEADER_TIMEOUT_SECONDS) -> server.Site:
    """A Site whose requests enforce the body limit, whose HTTP/1.1 connections enforce
    Go's header limits and read_header_timeout, and which runs every path through
    handler."""

    class _Request(KextRequest):
        pass

    class _Channel(KextChannel):
        pass

    _Request.max_body_bytes = max_body_bytes
    _Channel.max_body_bytes = max_body_bytes
    _Channel.read_header_timeout = read_header_timeout
    site = _Site(APIResource(handler), requestFactory=_Request)
    site.channel = _Channel
    site.displayTracebacks = False
    site.noisy = False
    return site
