"""Twisted glue: turn a twisted.web request into an APIRequest, run the handler chain and write
its Response or StreamResponse back (HTTP/1.1 and HTTP/2 alike)."""

from __future__ import annotations

import asyncio
import logging
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from OpenSSL import crypto
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from kext.api import errors
from kext.server.request import APIRequest, Handler, Response, StreamResponse, status_response
from kext.server.request_info import parse_request_info

log = logging.getLogger("kext.httplog")


class KextRequest(server.Request):
    """A twisted.web Request that stops buffering a body past the configured limit."""

    max_body_bytes = 3 * 1024 * 1024
    body_too_large = False
    _received = 0

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
        started = time.monotonic()
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
        user = api_request.user.name if api_request.user else ""
        log.info(
            "%s %s user=%s code=%s latency=%.1fms",
            api_request.info.verb.upper() if api_request.info.is_resource_request
            else api_request.method, request.uri.decode("latin-1"), user,
            request.code, (time.monotonic() - started) * 1000,
        )


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
    flow = _FlowControl()
    chunks = response.chunks
    try:
        if getattr(request, "_disconnected", False):
            return
        request.notifyFinish().addBoth(flow.closed)
        # Send the status line and headers now: a watcher learns its watch is established
        # before the first event, as kube-apiserver flushes them.
        request.write(b"")
        request.registerProducer(flow, True)
        async for chunk in chunks:
            if flow.is_closed:
                break
            request.write(chunk)
            if flow.paused:
                # The client is not reading: stop pulling events. The watch cache's bounded
                # queue for this watcher then fills and the cache ends it.
                await flow.resumed()
                if flow.is_closed:
                    break
    except Exception:
        # The stream is already under way: end it, so the client re-watches.
        log.exception("watch stream for %s ended by an error", request.uri)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    if not flow.is_closed:
        request.unregisterProducer()
        request.finish()


class _FlowControl:
    """A push producer registered on a streaming response: the transport pauses it when its
    send buffer is full (HTTP/1.1 socket or HTTP/2 flow-control window)."""

    def __init__(self) -> None:
        self.paused = False
        self.is_closed = False
        self._resume: asyncio.Future[None] | None = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        if self._resume is not None and not self._resume.done():
            self._resume.set_result(None)

    def stopProducing(self) -> None:
        self.closed(None)

    def closed(self, _: object) -> None:
        self.is_closed = True
        self.resumeProducing()

    async def resumed(self) -> None:
        if not self.paused:
            return
        self._resume = asyncio.get_running_loop().create_future()
        await self._resume


def make_site(handler: Handler, max_body_bytes: int) -> server.Site:
    """A Site whose requests enforce the body limit and run every path through handler."""

    class _Request(KextRequest):
        pass

    _Request.max_body_bytes = max_body_bytes
    site = server.Site(APIResource(handler), requestFactory=_Request)
    site.displayTracebacks = False
    site.noisy = False
    return site
