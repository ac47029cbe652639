"""kext's client for kube-apiserver: JSON over HTTPS on Twisted's `Agent`, on the asyncio loop
that Twisted's asyncioreactor runs on.

One `KubeClient` per kube-apiserver, shared by authentication, authorization, admission and
doctor. It keeps a pool of persistent TLS connections (one handshake per connection, not per
call), verifies the server against the cluster CA, and sends a client certificate and/or a
bearer token (a token file is re-read as it rotates). Every call has a timeout covering all
its attempts, so a caller is never kept waiting past the time it gave. Idempotent calls are
retried with back-off on connection errors, 5xx and 429; any call is retried when the server
asks for it with `Retry-After` (client-go's rule), within the same timeout.

The reactor must be the asyncio reactor and must be running (kext's server and `kext doctor`
install and run it); tests may use an `AsyncioSelectorReactor` built on their loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.internet import error as net_error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from kext import __version__
from kext.kube.config import ClusterAccess
from kext.kube.errors import KubeError, KubeStatusError, KubeTimeout, KubeUnavailable
from kext.kube.token import TOKEN_FILE_PERIOD, FileToken, StaticToken, TokenSource

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 30.0  # an upper bound only: each call's own timeout cuts it shorter
DEFAULT_RETRIES = 4  # attempts after the first, all within the call's timeout
BACKOFF_BASE = 0.1
BACKOFF_MAX = 2.0
POOL_SIZE = 25  # idle connections kept per host (client-go's MaxIdleConnsPerHost)
WATCH_GRACE = 30.0  # a watch asked to end after N s is cut off client-side at N + this
WATCH_HIGH_WATER = 4 * 1024 * 1024  # bytes buffered before the socket is paused
USER_AGENT = f"kext/{__version__}"
RETRIABLE_CODES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class KubeResponse:
    """An HTTP answer of kube-apiserver: code, headers (lower-case names) and body."""

    code: int
    headers: Mapping[str, tuple[str, ...]]
    body: bytes

    def header(self, name: str) -> str:
        """The first value of the header called name, or ""."""
        values = self.headers.get(name.lower(), ())
        return values[0] if values else ""

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as error:
            raise KubeError(f"kube-apiserver answered {self.code} with a body that is not "
                            f"JSON: {error}") from None


@dataclass(frozen=True)
class WatchEvent:
    """One event of a watch stream: ADDED, MODIFIED, DELETED or BOOKMARK and its object.
    (ERROR events are raised as KubeStatusError.)"""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion") or "")


class KubeClient:
    """A client for one kube-apiserver. Paths are absolute API paths (`/api/v1/...`)."""

    def __init__(self, access: ClusterAccess, *, reactor: Any = None,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 token_period: float = TOKEN_FILE_PERIOD, pool_size: int = POOL_SIZE) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.access = access
        self.server = access.server
        self.timeout = timeout
        self.retries = retries
        self._tokens: TokenSource = (
            FileToken(access.token_file, token_period) if access.token_file
            else StaticToken(access.token)
        )
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = pool_size
        self._agent = Agent.usingEndpointFactory(
            reactor, _ClusterEndpoints(reactor, access), pool=self._pool)
        self._watches: set[WatchStream] = set()

    def __repr__(self) -> str:
        return f"KubeClient({self.server!r})"

    async def get(self, path: str, *, params: Mapping[str, str] | None = None,
                  timeout: float | None = None) -> Any:
        """GET path: the decoded JSON body, or KubeStatusError with kube's Status."""
        response = await self.request("GET", path, params=params, timeout=timeout)
        return response.json()

    async def post(self, path: str, body: Any, *, params: Mapping[str, str] | None = None,
                   timeout: float | None = None, idempotent: bool = False) -> Any:
        """POST body as JSON: the decoded JSON answer, or KubeStatusError. Pass
        idempotent=True for requests with no side effect (TokenReview, SubjectAccessReview)
        so connection errors and 5xx are retried like a GET's."""
        response = await self.request("POST", path, params=params, body=orjson.dumps(body),
                                      timeout=timeout, idempotent=idempotent)
        return response.json()

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: bytes | None = None, timeout: float | None = None,
                      idempotent: bool | None = None) -> KubeResponse:
        """One call, retried as the module docstring says, within `timeout` seconds in all.
        Returns a 2xx response; an error answer raises KubeStatusError, no answer raises
        KubeUnavailable (KubeTimeout when the time ran out)."""
        budget = self.timeout if timeout is None else timeout
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
        url = self._url(path, params)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        what = f"{method} {path}"
        token_retried = False
        attempt = 0
        failure: KubeError | None = None
        while True:
            started = time.monotonic()
            token = self._tokens.token()
            try:
                async with asyncio.timeout_at(deadline):
                    response = await self._round_trip(method, url, body, token, loop)
            except TimeoutError:
                last = f" (before that: {failure})" if attempt else ""
                raise KubeTimeout(f"{what}: no answer from {self.server} within "
                                  f"{budget:g}s{last}") from None
            except KubeUnavailable as error:
                if not idempotent or _permanent(error):
                    raise
                failure, delay = error, _backoff(attempt)
            else:
                if 200 <= response.code < 300:
                    return response
                status = KubeStatusError.from_response(
                    response.code, response.body, _retry_after(response), method)
                if response.code == 401 and not token_retried:
                    # A rotated token file: drop the copy the server refused, retry once.
                    self._tokens.refused(started)
                    if token and self._tokens.token() != token:
                        token_retried = True
                        continue
                if response.code not in RETRIABLE_CODES or not (
                        idempotent or status.retry_after_seconds):
                    raise status
                failure = status
                delay = status.retry_after_seconds or _backoff(attempt)
            attempt += 1
            if attempt > self.retries or loop.time() + delay >= deadline:
                raise failure
            log.debug("%s: %s; retrying in %.2fs (attempt %d)", what, failure, delay, attempt)
            await asyncio.sleep(delay)

    def watch(self, path: str, resource_version: str = "", *,
              params: Mapping[str, str] | None = None, timeout_seconds: int | None = None,
              allow_bookmarks: bool = False, timeout: float | None = None) -> WatchStream:
        """A watch of the collection at path from resource_version ("" = the current state
        as synthetic ADDED events, then changes). Use as `async with client.watch(...) as
        events: async for event in events`. The server ends the stream after
        timeout_seconds (and the client cuts it off WATCH_GRACE later if it does not);
        `timeout` bounds the wait for the response headers. An ERROR event raises
        KubeStatusError (410 Expired: the resourceVersion is too old, list again)."""
        query = dict(params or {})
        query["watch"] = "true"
        if resource_version:
            query["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            query["timeoutSeconds"] = str(int(timeout_seconds))
        if allow_bookmarks:
            query["allowWatchBookmarks"] = "true"
        return WatchStream(self, path, self._url(path, query),
                           self.timeout if timeout is None else timeout, timeout_seconds)

    async def close(self) -> None:
        """End open watches and close the pooled connections."""
        for stream in list(self._watches):
            stream.close()
        loop = asyncio.get_running_loop()
        await self._pool.closeCachedConnections().asFuture(loop)

    # -- one round trip

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.server}{path}{query}"  # the server URL may carry a path prefix

    def _headers(self, token: str, body: bytes | None) -> Headers:
        headers = Headers({b"Accept": [b"application/json"],
                           b"User-Agent": [USER_AGENT.encode()]})
        if token:
            headers.addRawHeader(b"Authorization", b"Bearer " + token.encode())
        if body is not None:
            headers.addRawHeader(b"Content-Type", b"application/json")
        return headers

    async def _open(self, method: str, url: str, body: bytes | None, token: str,
                    loop: asyncio.AbstractEventLoop) -> Any:
        producer: Any = _BytesProducer(body) if body is not None else None
        deferred = self._agent.request(method.encode(), url.encode(),
                                       self._headers(token, body), producer)
        try:
            return await _response(deferred, loop)
        except KubeError:
            raise
        except Exception as error:
            raise _unavailable(self.server, error) from None

    async def _round_trip(self, method: str, url: str, body: bytes | None, token: str,
                          loop: asyncio.AbstractEventLoop) -> KubeResponse:
        response = await self._open(method, url, body, token, loop)
        finished: Deferred[bytes] = Deferred(lambda _: collector.abort())
        collector = _BodyCollector(finished)
        response.deliverBody(collector)
        try:
            data = await finished.asFuture(loop)
        except Exception as error:
            raise _unavailable(self.server, error) from None
        return KubeResponse(response.code, _header_map(response.headers), data)


class WatchStream:
    """An open watch. Iterate it for WatchEvents; `close()` (or leaving `async with`) ends it.
    The iteration ends when the server ends the stream; a dropped connection raises
    KubeUnavailable."""

    def __init__(self, client: KubeClient, path: str, url: str, timeout: float,
                 timeout_seconds: int | None) -> None:
        self._client = client
        self.path = path
        self._url = url
        self._timeout = timeout
        self._timeout_seconds = timeout_seconds
        self._stream: _StreamProtocol | None = None
        self._cutoff: asyncio.TimerHandle | None = None
        self._buffer = b""
        self._closed = False

    def __repr__(self) -> str:
        return f"WatchStream({self.path!r})"

    async def __aenter__(self) -> WatchStream:
        await self._start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        if self._stream is None:
            await self._start()
        assert self._stream is not None
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                if line.strip():
                    return self._event(line)
                continue
            chunk = await self._stream.read()
            if chunk is None:
                self.close()
                if self._buffer.strip():
                    line, self._buffer = self._buffer, b""
                    return self._event(line)
                if self._stream.failure is not None:
                    raise self._stream.failure
                raise StopAsyncIteration
            self._buffer += chunk

    def close(self) -> None:
        """End the watch (its connection is closed, not returned to the pool)."""
        if self._closed:
            return
        self._closed = True
        self._client._watches.discard(self)
        if self._cutoff is not None:
            self._cutoff.cancel()
        if self._stream is not None:
            self._stream.abort()

    async def _start(self) -> None:
        if self._closed:
            raise KubeError(f"watch of {self.path} is closed")
        client = self._client
        loop = asyncio.get_running_loop()
        token = client._tokens.token()
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                response = await client._open("GET", self._url, None, token, loop)
                if response.code != 200:
                    finished: Deferred[bytes] = Deferred(lambda _: collector.abort())
                    collector = _BodyCollector(finished)
                    response.deliverBody(collector)
                    body = await finished.asFuture(loop)
                    if response.code == 401:
                        client._tokens.refused(started)
                    raise KubeStatusError.from_response(response.code, body)
        except TimeoutError:
            raise KubeTimeout(f"watch of {self.path}: no answer from {client.server} within "
                              f"{self._timeout:g}s") from None
        except Exception as error:
            if isinstance(error, KubeError):
                raise
            raise _unavailable(client.server, error) from None
        self._stream = _StreamProtocol(loop, f"watch of {self.path}")
        response.deliverBody(self._stream)
        client._watches.add(self)
        if self._timeout_seconds is not None:
            self._cutoff = loop.call_later(self._timeout_seconds + WATCH_GRACE,
                                           self._stream.cut_off)

    def _event(self, line: bytes) -> WatchEvent:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            self.close()
            raise KubeError(f"watch of {self.path}: an event is not JSON: {error}") from None
        kind = value.get("type") if isinstance(value, dict) else None
        obj = value.get("object") if isinstance(value, dict) else None
        if not isinstance(kind, str) or not isinstance(obj, dict):
            self.close()
            raise KubeError(f"watch of {self.path}: not a watch event: {line[:200]!r}")
        if kind == "ERROR":
            self.close()
            code = int(obj.get("code") or 500)
            raise KubeStatusError.from_response(code, orjson.dumps(obj))
        return WatchEvent(kind, obj)


# -- Twisted plumbing


@implementer(IAgentEndpointFactory)
class _ClusterEndpoints:
    """Where the Agent connects: TLS to kube-apiserver, verified against the cluster CA (or
    the system's trust store), TLS 1.2+, with the client certificate when there is one; one
    connection creator (one SSL context) per host. Built here rather than by Agent's default
    so TLS write buffering runs on this client's reactor, not on the global one."""

    def __init__(self, reactor: Any, access: ClusterAccess) -> None:
        self._reactor = reactor
        if access.ca_pem:
            roots = [Certificate(crypto.X509.from_cryptography(c))
                     for c in x509.load_pem_x509_certificates(access.ca_pem)]
            self._trust: Any = trustRootFromCertificates(roots)
        else:
            self._trust = platformTrust()
        self._options: dict[str, Any] = {"raiseMinimumTo": TLSVersion.TLSv1_2}
        if access.client_cert_pem:
            chain = x509.load_pem_x509_certificates(access.client_cert_pem)
            key = serialization.load_pem_private_key(access.client_key_pem, password=None)
            # pyOpenSSL takes cryptography's objects (its own X509/PKey are deprecated).
            self._options.update(privateKey=key, certificate=chain[0], extraCertChain=chain[1:])
        self._server_name = access.tls_server_name
        self._creators: dict[tuple[str, int], Any] = {}

    def endpointForURI(self, uri: URI) -> Any:
        if uri.scheme != b"https":
            raise KubeUnavailable(f"kext talks to kube-apiserver over https only, not {uri}")
        host = uri.host.decode("ascii")
        key = (host, uri.port)
        if key not in self._creators:
            self._creators[key] = optionsForClientTLS(
                self._server_name or host, self._trust,
                extraCertificateOptions=dict(self._options))
        # An address is dialled directly: HostnameEndpoint's happy-eyeballs timer would add
        # 0.3 s to every refused connection.
        endpoint: Any
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, uri.port, CONNECT_TIMEOUT)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self._reactor, host, uri.port, CONNECT_TIMEOUT)
        else:
            endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=CONNECT_TIMEOUT)
        return wrapClientTLS(self._creators[key], endpoint, clock=self._reactor)


@implementer(IBodyProducer)
class _BytesProducer:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _BodyCollector(Protocol):
    """Collects a response body into `finished` (cancelling it drops the connection)."""

    def __init__(self, finished: Deferred[bytes]) -> None:
        self.finished = finished
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class _Discard(Protocol):
    """Takes a response body nobody wants and closes its connection."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class _StreamProtocol(Protocol):
    """A streamed response body handed to asyncio: read() returns the next chunk, None at
    the end (`failure` set when the stream broke). The socket pauses while too much waits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, what: str) -> None:
        self._loop = loop
        self._what = what
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None
        self.failure: KubeError | None = None

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > WATCH_HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pauseProducing()
        self._wake()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not reason.check(ResponseDone, PotentialDataLoss) and self.failure is None:
            why = _reason(reason.value) if reason.value else "connection lost"
            self.failure = KubeUnavailable(f"{self._what} broke off: {why}")
        self._ended = True
        self._wake()

    async def read(self) -> bytes | None:
        while not self._chunks:
            if self._ended:
                return None
            self._waiter = self._loop.create_future()
            await self._waiter
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < WATCH_HIGH_WATER // 2 and self.transport:
            self._paused = False
            self.transport.resumeProducing()
        return chunk

    def cut_off(self) -> None:
        self.failure = KubeTimeout(f"{self._what} did not end when asked to; cut off")
        self.abort()

    def abort(self) -> None:
        if not self._ended and self.transport is not None:
            self.transport.stopProducing()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _response(deferred: Deferred[Any], loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """Deferred.asFuture for a request: a response that arrives after the future was
    cancelled (cancellation reaches the Deferred a loop turn later) would hold its connection
    paused for ever, waiting for a reader; it is closed instead."""
    future: asyncio.Future[Any] = loop.create_future()

    def arrived(response: Any) -> None:
        if future.cancelled():
            response.deliverBody(_Discard())
        else:
            future.set_result(response)

    def failed(failure: Failure) -> None:
        if not future.cancelled():
            future.set_exception(failure.value or Exception("request failed"))

    def cancelled(_: asyncio.Future[Any]) -> None:
        if future.cancelled():
            deferred.cancel()

    deferred.addCallbacks(arrived, failed)
    future.add_done_callback(cancelled)
    return future


def _header_map(headers: Headers) -> dict[str, tuple[str, ...]]:
    return {name.decode("latin-1").lower(): tuple(v.decode("latin-1") for v in values)
            for name, values in headers.getAllRawHeaders()}


def _retry_after(response: KubeResponse) -> float:
    value = response.header("retry-after")
    try:
        seconds = int(value)
    except ValueError:
        return 0.0
    return float(seconds) if seconds > 0 else 0.0


def _backoff(attempt: int) -> float:
    """Exponential back-off with jitter: about 0.1, 0.2, 0.4 ... up to BACKOFF_MAX seconds."""
    delay: float = min(BACKOFF_BASE * 2 ** attempt, BACKOFF_MAX)
    return delay * (0.5 + random.random() / 2)


class _TLSFailure(KubeUnavailable):
    """The TLS handshake failed: a wrong CA or name does not fix itself, so no retry."""


def _permanent(error: KubeUnavailable) -> bool:
    return isinstance(error, _TLSFailure)


def _unavailable(server: str, error: BaseException) -> KubeUnavailable:
    """A KubeUnavailable that says in words what went wrong reaching server."""
    reasons = [f.value for f in getattr(error, "reasons", [])] or [error]
    for reason in reasons:
        if isinstance(reason, SSL.Error) or type(reason).__name__ == "VerificationError":
            return _TLSFailure(f"TLS with {server} failed: {_reason(reason)} (is the cluster's "
                               "CA certificate the one configured?)", _reason(reason), tls=True)
    why = "; ".join(_reason(r) for r in reasons)
    return KubeUnavailable(f"cannot reach kube-apiserver at {server}: {why}", why)


def _reason(error: BaseException) -> str:
    if isinstance(error, ResponseNeverReceived | ResponseFailed):
        return "; ".join(_reason(f.value) for f in error.reasons) or "no response"
    if isinstance(error, net_error.ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, net_error.TimeoutError):
        return "connect timed out"
    if isinstance(error, net_error.DNSLookupError):
        return "host name not found"
    if isinstance(error, net_error.ConnectionLost | net_error.ConnectionDone):
        return "connection closed by the server"
    if isinstance(error, SSL.Error):
        parts = [p for item in error.args[0] for p in item if isinstance(p, str)] \
            if error.args and isinstance(error.args[0], list) else [str(error)]
        return ", ".join(parts) or "TLS error"
    return str(error) or type(error).__name__
