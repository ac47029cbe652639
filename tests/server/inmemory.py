"""kext's server in memory, for unit tests: one place that builds an `APIServer` from a
completed config as kext does, with its stores on a MemoryStore (tests/storage/memory.py)
behind a watch cache each instead of on etcd, and drives requests through its filter chain
and router as the wire would.

    server = await InMemoryServer.start(tmp_path)
    response = await server.request("GET", "/apis/example.kext.io/v1alpha1/namespaces/ns/widgets")
    ...
    await server.stop()

`request()` builds the `APIRequest` twisted's layer (kext/server/http.py) would, presenting
the admin client certificate unless told otherwise; `Wire` (below) drives the twisted.web
layer itself with raw HTTP/1.1 bytes over an in-memory transport.

It builds the server with `APIServer.build` on a MemoryStore, where `prepare_run` builds it on
an etcd client."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from kext.api.resource import ResourceDefinition
from kext.certs import KeyPair, issue_cert, new_ca
from kext.config import ServerConfig
from kext.registry.store import Store
from kext.server.app import APIServer
from kext.server.config import new_config
from kext.server.http import make_site
from kext.server.process import ServingCertificates
from kext.server.request import AnyResponse, APIRequest, Response, StreamResponse
from kext.server.request_info import parse_request_info
from kext.storage.cacher import DEFAULT_BLOCK_TIMEOUT
from kext.storage.errors import UnavailableError
from kext.storage.settings import EtcdSettings
from tests.registry.objects import definition
from tests.storage.memory import MemoryStore

Object = dict[str, Any]
WIDGETS = "/apis/example.kext.io/v1alpha1/namespaces/ns/widgets"
GADGETS = "/apis/example.kext.io/v1alpha1/gadgets"


def der(pair: KeyPair) -> bytes:
    return pair.cert.public_bytes(serialization.Encoding.DER)


class _GatedMemoryStore(MemoryStore):
    """A MemoryStore whose revision reads fail while healthy["etcd"] is False, as an etcd
    that went away does (the server's etcd health check reads the revision)."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = {"etcd": True}

    async def current_revision(self) -> int:
        if not self.healthy["etcd"]:
            raise UnavailableError("", "connection refused")
        return await super().current_revision()


@dataclass
class InMemoryServer:
    """An APIServer serving from a MemoryStore; `handler` is its full filter chain."""

    server: APIServer
    storage: MemoryStore
    stores: dict[str, Store]  # by plural
    client_ca: KeyPair  # signs the x509 clients (authentication.clientCAFile)
    admin: KeyPair  # a client of the client CA in system:masters
    healthy: dict[str, bool] = field(default_factory=lambda: {"etcd": True})

    @classmethod
    async def start(cls, tmp_path: Path,
                    resources: Sequence[ResourceDefinition] | None = None,
                    configure: Callable[[ServerConfig, Path], None] | None = None,
                    block_timeout: float = DEFAULT_BLOCK_TIMEOUT) -> InMemoryServer:
        """A server built as kext builds one from the config (Widgets and Gadgets unless
        resources are given; configure may change the options first, given tmp_path for
        files), its watch caches primed (reads and watches wait at most block_timeout
        seconds for a cache to be ready or reach a revision)."""
        client_ca = new_ca("kext-test-clients")
        ca_file = tmp_path / "client-ca.crt"
        ca_file.write_bytes(client_ca.cert_pem)
        options = ServerConfig()
        options.authentication.client_ca_file = str(ca_file)
        options.resources = list(resources if resources is not None
                                 else [definition("widgets"), definition("gadgets")])
        if configure is not None:
            configure(options, tmp_path)
        client_cas = [str(ca_file)]
        if options.authentication.request_header.client_ca_file:
            client_cas.append(options.authentication.request_header.client_ca_file)
        serving = ServingCertificates("unused.crt", "unused.key", tuple(client_cas),
                                      "https://127.0.0.1:8443", "")
        config = new_config(options, serving, EtcdSettings(endpoints=("memory",))).complete()
        api_server = APIServer(config)
        storage = _GatedMemoryStore()
        admin = issue_cert(client_ca, "kext-admin", ["system:masters"], client=True)
        await api_server.build(storage, block_timeout=block_timeout)
        self = cls(api_server, storage, {s.resource: s for s in api_server.stores}, client_ca,
                   admin, storage.healthy)
        for cache in api_server.serving.caches:
            await cache.wait_ready(5)
        return self


    @property
    def handler(self) -> Any:
        assert self.server.handler is not None
        return self.server.handler

    def api_request(self, method: str, url: str, body: Any = None, *,
                    headers: dict[str, str] | None = None, client: KeyPair | None = None,
                    anonymous: bool = False) -> APIRequest:
        """The APIRequest twisted's layer makes of a request: url with its query, a body
        (bytes as they are, anything else as JSON), headers, and the client certificate
        presented (client, else the admin's; none when anonymous)."""
        split = urlsplit(url)
        query = parse_qs(split.query, keep_blank_values=True)
        if body is not None and not isinstance(body, bytes):
            body = orjson.dumps(body)
        raw = [(k.lower(), v) for k, v in (headers or {}).items()]
        if body and "content-type" not in dict(raw):
            raw.append(("content-type", "application/json"))
        pair = None if anonymous else client or self.admin
        return APIRequest(
            method=method, path=split.path, query=query, headers=dict(raw), body=body or b"",
            info=parse_request_info(method, split.path, query),
            peer_certificates=[der(pair)] if pair else [], raw_headers=raw,
            remote="127.0.0.1",
        )

    async def request(self, method: str, url: str, body: Any = None, *,
                      headers: dict[str, str] | None = None, client: KeyPair | None = None,
                      anonymous: bool = False) -> AnyResponse:
        """Serve one request through the whole chain (see api_request)."""
        return await self.handler(self.api_request(method, url, body, headers=headers,
                                                   client=client, anonymous=anonymous))

    async def stop(self) -> None:
        await self.server.stop()


def body(response: AnyResponse) -> Any:
    """The JSON body of a (non-streaming) response."""
    assert isinstance(response, Response), response
    return json.loads(response.body)


def header(response: AnyResponse, name: str) -> str | None:
    """A response header's value (the last one when repeated)."""
    values = [v for k, v in response.headers if k.lower() == name.lower()]
    return values[-1] if values else None


async def next_chunk(response: AnyResponse, timeout: float = 5) -> Any:
    """The next chunk of a watch stream, decoded (one event per chunk). Read in the calling
    task, as twisted's layer reads a stream in the one task serving the request (the stream
    ends itself at its timeout by cancelling the task reading it)."""
    assert isinstance(response, StreamResponse), response
    async with asyncio.timeout(timeout):
        chunk = await anext(aiter(response.chunks))
    return orjson.loads(chunk)


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    """Poll condition (bounded) until it holds, letting other tasks run in between."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def close_stream(response: AnyResponse) -> None:
    assert isinstance(response, StreamResponse)
    aclose = getattr(response.chunks, "aclose", None)
    if aclose is not None:
        await aclose()


# -- the twisted.web layer in memory


class _TLSConnection:
    """What kext reads of an OpenSSL connection: the peer's certificate and chain."""

    def __init__(self, chain: Sequence[KeyPair]) -> None:
        self._chain = [crypto.X509.from_cryptography(p.cert) for p in chain]

    def get_peer_certificate(self) -> crypto.X509 | None:
        return self._chain[0] if self._chain else None

    def get_peer_cert_chain(self) -> list[crypto.X509]:
        # as OpenSSL on the server side: the chain without the leaf
        return self._chain[1:]


class WireTransport(StringTransport):
    """An in-memory transport that tells waiters when bytes are written, and presents the
    client's TLS chain (none when empty) as a TLS transport's handle does."""

    def __init__(self, chain: Sequence[KeyPair] = ()) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 50123),
                         hostAddress=IPv4Address("TCP", "127.0.0.1", 8443))
        self._tls = _TLSConnection(chain)
        self._written = asyncio.Event()

    def getHandle(self) -> Any:
        return self._tls

    def write(self, data: bytes) -> None:
        super().write(data)
        self._written.set()

    def writeSequence(self, seq: Sequence[bytes]) -> None:
        self.write(b"".join(seq))

    async def until(self, done: Callable[[bytes], bool], timeout: float = 5) -> bytes:
        """Wait (at most timeout seconds) until what was written satisfies done."""
        async with asyncio.timeout(timeout):
            while not done(self.value()):
                self._written.clear()
                await self._written.wait()
        return self.value()


class Wire:
    """One HTTP/1.1 connection to kext's twisted.web site (http.make_site) over an
    in-memory transport: raw request bytes in, raw response bytes out."""

    def __init__(self, handler: Any, max_body_bytes: int = 3 * 1024 * 1024,
                 chain: Sequence[KeyPair] = ()) -> None:
        site = make_site(handler, max_body_bytes)
        self.clock = MemoryReactorClock()
        site.reactor = self.clock  # type: ignore[assignment]  # timeouts: never run
        self.transport = WireTransport(chain)
        self.channel = site.buildProtocol(self.transport.getPeer())
        assert self.channel is not None
        self.channel.makeConnection(self.transport)

    def send(self, method: str, path: str, body: bytes = b"",
             headers: Sequence[tuple[str, str]] = (), *, length: bool = True) -> None:
        """Write a request; with length, a Content-Length for body."""
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8443"]
        lines.extend(f"{k}: {v}" for k, v in headers)
        if length and (body or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body)}")
        self.channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def response(self, timeout: float = 5) -> WireResponse:
        """The next complete response on the connection (its bytes taken off the wire)."""
        parsed: list[WireResponse] = []

        def complete(data: bytes) -> bool:
            parsed[:] = []
            response = parse_response(data)
            if response is None:
                return False
            parsed.append(response)
            return True

        await self.transport.until(complete, timeout)
        self.transport.clear()
        return parsed[0]

    def close(self) -> None:
        """The client goes away."""
        self.channel.connectionLost(ConnectionError("closed by the test"))


@dataclass(frozen=True)
class WireResponse:
    """One HTTP response as read off the wire."""

    status: int
    reason: str
    headers: http.client.HTTPMessage
    content: bytes

    def header(self, name: str) -> str | None:
        """A header's raw value (latin-1 as on the wire; kext writes UTF-8)."""
        return self.headers.get(name)


class _Socket:
    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self._file


def parse_response(data: bytes) -> WireResponse | None:
    """The response data holds, read to its end (None while it is incomplete)."""
    response = http.client.HTTPResponse(_Socket(data))  # type: ignore[arg-type]
    try:
        response.begin()
        content = response.read()
    except (http.client.HTTPException, ValueError):  # incomplete so far
        return None
    return WireResponse(response.status, response.reason, response.headers, content)
