"""HTTPS to admission webhooks, on Twisted's `Agent` over the asyncio reactor kext runs on.

One transport per CA bundle (a webhook's caBundle or caFile; none: the system's roots), each
with its own pool of persistent connections, so a connection verified against one CA is never
reused for a webhook that trusts another, and calls reuse connections rather than shaking
hands each time. TLS 1.2 or later; the server is verified against the URL's host name or IP
address. A call has one deadline (the webhook's timeoutSeconds) for connecting, sending and
reading the answer; past it the connection is dropped. A POST that fails on a pooled
connection the server had already closed is sent once more on a new one, within the same
deadline (Go's transport does the same for a request it could not write).

Failures are `WebhookCallError`s worded as kube's Go client words them (`Post "<url>":
context deadline exceeded`, `dial tcp <host>:<port>: connect: connection refused`...).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography import x509
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
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

from kext import __version__
from kext.api.errors import go_quote

log = logging.getLogger(__name__)

POOL_SIZE = 25  # idle connections kept per webhook host
IDLE_SECONDS = 60  # an idle pooled connection is closed after this long
USER_AGENT = f"kext/{__version__}"


class WebhookCallError(Exception):
    """No usable answer from a webhook. `code` is the HTTP code kube records for it: the
    webhook's own error code, or 503 when there was no answer."""

    def __init__(self, reason: str, code: int = 503) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class _Answer:
    code: int
    body: bytes


class WebhookClient:
    """Posts AdmissionReviews; one per API server, shared by all its webhooks."""

    def __init__(self, reactor: Any = None, pool_size: int = POOL_SIZE) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor
        self._pool_size = pool_size
        self._transports: dict[bytes, _Transport] = {}

    async def post(self, url: str, ca_pem: bytes, body: bytes, timeout: float) -> bytes:
        """POST body (JSON) to url; the body of a 2xx answer, within timeout seconds, or a
        WebhookCallError."""
        transport = self._transports.get(ca_pem)
        if transport is None:
            transport = self._transports[ca_pem] = _Transport(self._reactor, ca_pem,
                                                              self._pool_size)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        shown = f"Post {go_quote(url)}"
        retried = False
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    answer = await transport.round_trip(url, body, loop)
                break
            except TimeoutError:
                raise WebhookCallError(f"{shown}: context deadline exceeded") from None
            except _StaleConnection as exc:
                if retried:
                    raise WebhookCallError(f"{shown}: {exc}") from None
                retried = True
            except _Failed as exc:
                raise WebhookCallError(f"{shown}: {exc}") from None
        if 200 <= answer.code < 300:
            return answer.body
        raise WebhookCallError(_error_answer(answer), answer.code)

    async def close(self) -> None:
        """Close every pooled connection."""
        loop = asyncio.get_running_loop()
        for transport in self._transports.values():
            await transport.pool.closeCachedConnections().asFuture(loop)
        self._transports.clear()


class _Failed(Exception):
    """A round trip failed; the text says how, as Go would."""


class _StaleConnection(_Failed):
    """The connection closed before the request went out or an answer came."""


class _Transport:
    def __init__(self, reactor: Any, ca_pem: bytes, pool_size: int) -> None:
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = pool_size
        self.pool.cachedConnectionTimeout = IDLE_SECONDS
        self.pool.retryAutomatically = False  # the POST retry is ours (module docstring)
        self.agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor, ca_pem),
                                                pool=self.pool)

    async def round_trip(self, url: str, body: bytes,
                         loop: asyncio.AbstractEventLoop) -> _Answer:
        headers = Headers({b"Content-Type": [b"application/json"],
                           b"Accept": [b"application/json, */*"],
                           b"User-Agent": [USER_AGENT.encode()]})
        try:
            response = await self.agent.request(b"POST", url.encode(), headers,
                                                _Body(body)).asFuture(loop)
            finished: Deferred[bytes] = Deferred(lambda _: collector.abort())
            collector = _BodyCollector(finished)
            response.deliverBody(collector)
            data = await finished.asFuture(loop)
        except (ResponseNeverReceived, RequestTransmissionFailed) as exc:
            reasons = [f.value for f in exc.reasons]
            if reasons and all(isinstance(r, net_error.ConnectionDone | net_error.ConnectionLost)
                               for r in reasons):
                raise _StaleConnection(_reason(exc, url)) from None
            raise _Failed(_reason(exc, url)) from None
        except Exception as exc:
            raise _Failed(_reason(exc, url)) from None
        return _Answer(response.code, data)


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """TLS endpoints verifying the webhook's certificate against one CA bundle (one
    connection creator per host), on this client's reactor."""

    def __init__(self, reactor: Any, ca_pem: bytes) -> None:
        self._reactor = reactor
        if ca_pem:
            roots = [Certificate(crypto.X509.from_cryptography(c))
                     for c in x509.load_pem_x509_certificates(ca_pem)]
            self._trust: Any = trustRootFromCertificates(roots)
        else:
            self._trust = platformTrust()
        self._creators: dict[tuple[str, int], Any] = {}

    def endpointForURI(self, uri: URI) -> Any:
        host = uri.host.decode("ascii")
        key = (host, uri.port)
        if key not in self._creators:
            self._creators[key] = optionsForClientTLS(
                host, self._trust, extraCertificateOptions={"raiseMinimumTo": TLSVersion.TLSv1_2})
        # an address is dialled directly: HostnameEndpoint's happy-eyeballs timer would add
        # 0.3 s to each refused connection
        endpoint: Any
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, uri.port)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self._reactor, host, uri.port)
        else:
            endpoint = HostnameEndpoint(self._reactor, host, uri.port)
        return wrapClientTLS(self._creators[key], endpoint, clock=self._reactor)


@implementer(IBodyProducer)
class _Body:
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


def _error_answer(answer: _Answer) -> str:
    """A webhook's non-2xx answer as client-go reports it: its Status message when it sent
    one, else a generic sentence."""
    try:
        status = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status" and status.get("message"):
        return str(status["message"])
    if answer.code == 404:
        return "the server could not find the requested resource"
    if answer.code == 500 and answer.body:
        return (f"an error on the server ({go_quote(answer.body[:1024].decode(errors='replace'))})"
                " has prevented the request from succeeding")
    return (f"the server responded with the status code {answer.code} but did not return more "
            "information")


def _reason(exc: BaseException, url: str) -> str:
    """A transport failure in the words of Go's net/http and crypto/tls."""
    reasons = [f.value for f in getattr(exc, "reasons", [])] or [exc]
    host_port = _host_port(url)
    texts = []
    for reason in reasons:
        if isinstance(reason, ResponseFailed | ResponseNeverReceived | RequestTransmissionFailed):
            texts.append(_reason(reason, url))
        elif isinstance(reason, net_error.ConnectionRefusedError):
            texts.append(f"dial tcp {host_port}: connect: connection refused")
        elif isinstance(reason, net_error.DNSLookupError):
            texts.append(f"dial tcp: lookup {host_port.rpartition(':')[0]}: no such host")
        elif isinstance(reason, net_error.TimeoutError | net_error.TCPTimedOutError):
            texts.append(f"dial tcp {host_port}: i/o timeout")
        elif isinstance(reason, SSL.Error):
            texts.append(_tls_reason(reason))
        elif type(reason).__name__ == "VerificationError":  # service_identity's
            texts.append(f"tls: failed to verify certificate: x509: certificate is not valid "
                         f"for {host_port.rpartition(':')[0]}")
        elif isinstance(reason, net_error.ConnectionDone | net_error.ConnectionLost):
            texts.append("EOF")
        else:
            texts.append(str(reason) or type(reason).__name__)
    return "; ".join(dict.fromkeys(texts))


def _tls_reason(error: SSL.Error) -> str:
    text = " ".join(str(part) for part in error.args)
    if "certificate verify failed" in text:
        return ("tls: failed to verify certificate: x509: certificate signed by unknown "
                "authority")
    return f"remote error: tls: {text}"


def _host_port(url: str) -> str:
    uri = URI.fromBytes(url.encode())
    return f"{uri.host.decode()}:{uri.port}"
