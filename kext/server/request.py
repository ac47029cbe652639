"""The server's own view of a request and response, independent of Twisted, so handlers and
filters can be driven in memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import yaml

from kext.api import errors
from kext.auth.user import UserInfo
from kext.server.negotiation import Target
from kext.server.request_info import RequestInfo


@dataclass
class APIRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lowercase names; repeated headers joined with ","
    body: bytes
    info: RequestInfo
    # DER-encoded client certificate chain presented on the TLS connection (leaf first).
    peer_certificates: list[bytes] = field(default_factory=list)
    raw_headers: list[tuple[str, str]] = field(default_factory=list)
    user: UserInfo | None = None
    remote: str = ""

    def param(self, name: str, default: str = "") -> str:
        """The last value of a query parameter."""
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json_body(self) -> Any:
        """The body decoded from JSON or YAML by Content-Type; 400 when it does not parse."""
        if not self.body:
            raise errors.bad_request("the request body is empty")
        content_type = self.header("content-type", "application/json").split(";")[0].strip()
        try:
            if content_type in ("application/yaml", "application/apply-patch+yaml"):
                decoded = yaml.load(self.body, Loader=_YAML_LOADER)
                orjson.dumps(decoded)  # what YAML holds beyond JSON (binary...) is refused here
                return decoded
            return orjson.loads(self.body)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the request body could not be decoded: {exc}") from None


class _YAMLLoader(yaml.SafeLoader):
    """Safe YAML as Kubernetes reads request bodies: timestamps stay strings (as in JSON),
    mapping keys become strings, and aliases are refused (a few bytes of aliases can expand
    into gigabytes: CVE-2019-11253)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases are not accepted in request bodies")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        # keys become strings before they meet in a dict: true and 1 (equal in Python) stay
        # two keys, as sigs.k8s.io/yaml reads them
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
        pairs = self.construct_pairs(node, deep=True)
        return {k if isinstance(k, str) else _scalar_key(k): v for k, v in pairs}


def _scalar_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    raise yaml.YAMLError(f"a mapping key must be a string, not {type(key).__name__}")


_YAMLLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _YAMLLoader.yaml_implicit_resolvers.items()
}
_YAML_LOADER = _YAMLLoader


@dataclass
class Response:
    code: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


class Producer(Protocol):
    """What writes a stream's chunks, as its connection sees it (a push producer)."""

    def pause(self) -> None:
        """The connection cannot take more now (send buffer or HTTP/2 window full)."""
        ...

    def resume(self) -> None:
        """The connection drained: write again."""
        ...


class ChunkWriter(Protocol):
    """A streaming response's side of its connection (an HTTP/1.1 chunked body or an HTTP/2
    stream), written from whatever delivers the chunks, with no task per chunk."""

    def write(self, chunk: bytes) -> None:
        """Send one chunk as it is (ignored once the client has gone)."""
        ...

    def set_producer(self, producer: Producer) -> None:
        """Pause producer while the connection pushes back, resume it once it drains."""
        ...


@dataclass
class StreamResponse:
    """A long-running response (watch): `run(writer)` writes each chunk to the connection's
    ChunkWriter as it comes and returns when the stream ends (cancelled when the client
    goes away). `chunks` reads the same stream as an async iterator."""

    run: Callable[[ChunkWriter], Awaitable[None]]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    code: int = 200
    _chunks: AsyncIterator[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def chunks(self) -> AsyncIterator[bytes]:
        """The stream's chunks, pulled: for consumers without a connection (tests)."""
        if self._chunks is None:
            self._chunks = _pulled(self.run)
        return self._chunks


def from_chunks(chunks: AsyncIterator[bytes]) -> Callable[[ChunkWriter], Awaitable[None]]:
    """A StreamResponse's run for chunks that come from an async iterator (one task per
    stream iterates it, waiting while the connection pushes back)."""

    async def run(writer: ChunkWriter) -> None:
        flow = _Flow()
        writer.set_producer(flow)
        try:
            async for chunk in chunks:
                writer.write(chunk)
                if flow.resumed is not None:
                    await flow.resumed
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    return run


class _Flow:
    """A Producer a task waits on while it is paused."""

    def __init__(self) -> None:
        self.resumed: asyncio.Future[None] | None = None

    def pause(self) -> None:
        if self.resumed is None:
            self.resumed = asyncio.get_running_loop().create_future()

    def resume(self) -> None:
        if self.resumed is not None:
            self.resumed.set_result(None)
            self.resumed = None


class _PullWriter:
    """A ChunkWriter holding chunks for a consumer that pulls them; it pauses the producer
    while it holds any, so the producer's own bound applies."""

    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.producer: Producer | None = None
        self.waiter: asyncio.Future[None] | None = None

    def write(self, chunk: bytes) -> None:
        self.queue.append(chunk)
        if self.producer is not None:
            self.producer.pause()
        self.wake()

    def set_producer(self, producer: Producer) -> None:
        self.producer = producer

    def wake(self, _: object = None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def _pulled(run: Callable[[ChunkWriter], Awaitable[None]]) -> AsyncGenerator[bytes, None]:
    writer = _PullWriter()
    task = asyncio.ensure_future(run(writer))
    task.add_done_callback(writer.wake)
    try:
        while True:
            if writer.queue:
                yield writer.queue.popleft()
                if not writer.queue and writer.producer is not None and not task.done():
                    writer.producer.resume()
                continue
            if task.done():
                task.result()
                return
            writer.waiter = asyncio.get_running_loop().create_future()
            await writer.waiter
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


AnyResponse = Response | StreamResponse
Handler = Callable[[APIRequest], Awaitable[AnyResponse]]


def encode(obj: Any, target: Target | None = None) -> tuple[bytes, str]:
    """Encode a response object as JSON (or YAML when asked); returns body and content type."""
    if target is not None and target.yaml:
        return yaml.safe_dump(obj, sort_keys=False).encode(), "application/yaml"
    return orjson.dumps(obj), "application/json"


def object_response(code: int, obj: Any, target: Target | None = None,
                    warnings: list[str] | None = None) -> Response:
    body, content_type = encode(obj, target)
    headers = [("Warning", f"299 - {errors.go_quote(w)}") for w in (warnings or [])]
    return Response(code, body, content_type, headers)


def status_response(error: errors.StatusError) -> Response:
    headers = []
    if error.retry_after_seconds:
        headers.append(("Retry-After", str(error.retry_after_seconds)))
    return Response(error.code, orjson.dumps(error.status()), "application/json", headers)
