"""kext's HTTPS client for the webhooks it calls (conversion webhooks today): JSON POSTs on
Twisted's `Agent`, on the asyncio loop that Twisted's asyncioreactor runs on.

One `HTTPSClient` per webhook configuration: it verifies the webhook's serving certificate
against that webhook's CA bundle (or the system's trust store when it has none), over TLS 1.2+,
and keeps a pool of persistent connections, so a webhook called on every read costs one TLS
handshake per connection, not per call. Each call has a timeout; failures raise
`WebhookCallError` worded as Go's net/http words them (`Post "<url>": <why>`), since that text
reaches clients inside kube's own messages.

The reactor must be the asyncio reactor, running (kext's server installs and runs it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from OpenSSL import crypto
from twisted.internet import error as net_error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
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

USER_AGENT = f"kext/{__version__}"
POOL_SIZE = 10  # idle connections kept per webhook host


class WebhookCallError(Exception):
    """A call that got no usable HTTP answer: the message is what kube would print."""


@dataclass(frozen=True)
class HTTPResponse:
    """A webhook's answer: status code, Content-Type and body."""

    code: int
    content_type: str
    body: bytes


class HTTPSClient:
    """POSTs JSON to one HTTPS webhook URL, verified against ca_pem (PEM certificates; empty:
    the system's trust store)."""

    def __init__(self, url: str, ca_pem: bytes = b"", *, reactor: Any = None,
                 pool_size: int = POOL_SIZE) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.url = url
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = pool_size
        self._agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor, ca_pem),
                                                 pool=self._pool)

    def __repr__(self) -> str:
        return f"HTTPSClient({self.url!r})"

    async def post(self, body: bytes, timeout: float, query: str = "") -> HTTPResponse:
        """POST body (JSON) to the URL (with `?query` when given); the answer whatever its
        code, or WebhookCallError when there is none within timeout seconds."""
        url = f"{self.url}?{query}" if query else self.url
        loop = asyncio.get_running_loop()
        headers = Headers({b"Content-Type": [b"application/json"],
                           b"Accept": [b"application/json"],
                           b"User-Agent": [USER_AGENT.encode()]})
        try:
            async with asyncio.timeout(timeout):
                deferred = self._agent.request(b"POST", url.encode(), headers,
                                               _BytesProducer(body))
                response = await deferred.asFuture(loop)
                finished: Deferred[bytes] = Deferred(lambda _: collector.abort())
                collector = _BodyCollector(finished)
                response.deliverBody(collector)
                data = await finished.asFuture(loop)
        except TimeoutError:
            raise WebhookCallError(f'Post "{url}": context deadline exceeded') from None
        except Exception as exc:
            raise WebhookCallError(f'Post "{url}": {_why(exc, url)}') from None
        content_type = response.headers.getRawHeaders(b"content-type", [b""])[0]
        return HTTPResponse(response.code, content_type.decode("latin-1"), data)

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._pool.closeCachedConnections().asFuture(asyncio.get_running_loop())


def _why(exc: BaseException, url: str) -> str:
    """A failed round trip in Go's words where kube users know them."""
    if isinstance(exc, ResponseFailed | ResponseNeverReceived) and exc.reasons:
        exc = exc.reasons[0].value
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or 443}"
    if isinstance(exc, net_error.ConnectionRefusedError):
        return f"dial tcp {address}: connect: connection refused"
    if isinstance(exc, net_error.DNSLookupError):
        return f"dial tcp: lookup {parts.hostname}: no such host"
    if isinstance(exc, net_error.TimeoutError):
        return f"dial tcp {address}: i/o timeout"
    text = str(exc)
    if "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if isinstance(exc, net_error.ConnectionLost | net_error.ConnectionDone):
        return "EOF"
    return text or type(exc).__name__


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """TLS 1.2+ to the webhook, verified against its CA bundle; one connection creator (one
    SSL context) per host, built on the client's reactor."""

    def __init__(self, reactor: Any, ca_pem: bytes) -> None:
        self._reactor = reactor
        if ca_pem.strip():
            roots = [Certificate(crypto.X509.from_cryptography(c))
                     for c in x509.load_pem_x509_certificates(ca_pem)]
            self._trust: Any = trustRootFromCertificates(roots)
        else:
            self._trust = platformTrust()
        self._creators: dict[tuple[str, int], Any] = {}

    def endpointForURI(self, uri: URI) -> Any:
        if uri.scheme != b"https":
            raise WebhookCallError(f"webhooks are called over https only, not {uri.toBytes()!r}")
        host = uri.host.decode("ascii")
        key = (host, uri.port)
        if key not in self._creators:
            self._creators[key] = optionsForClientTLS(
                host, self._trust,
                extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2})
        endpoint: Any = HostnameEndpoint(self._reactor, host, uri.port, timeout=30)
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
