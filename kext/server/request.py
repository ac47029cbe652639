"""The server's own view of a request and response, independent of Twisted, so handlers and
filters can be driven in memory."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import yaml

from kext.api import errors, nesting, yamljson
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
    uri: str = ""  # as sent: path and query
    # set by the outermost filters: when the request arrived (time.time()), its audit ID,
    # and the audit annotations later filters add (authorization's decision and reason)
    received: float = 0.0
    audit_id: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def param(self, name: str, default: str = "") -> str:
        """The first value of a query parameter: kube decodes a repeated parameter from its
        first value (apimachinery pkg/runtime/conversion.go, Convert_Slice_string_To_*)."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json_body(self) -> Any:
        """The body decoded from JSON or YAML by Content-Type; 400 when it does not parse or
        nests deeper than kube-apiserver's decoding allows of kext."""
        if not self.body:
            raise errors.bad_request("the request body is empty")
        content_type = self.header("content-type", "application/json").split(";")[0].strip()
        try:
            if content_type in YAML_CONTENT_TYPES:
                return decode_yaml(self.body)
            return decode_json(self.body)
        except BodyDecodeError as exc:
            raise errors.bad_request(f"the request body could not be decoded: {exc}") from None


YAML_CONTENT_TYPES = ("application/yaml", "application/apply-patch+yaml")
# An integer of 19 digits or more may lie outside int64 (kube decodes it as a float)
_LONG_INTEGER = re.compile(rb"[0-9]{19}")


class BodyDecodeError(ValueError):
    """A request body that is not a JSON (or YAML) value kube would accept."""


def decode_json(body: bytes) -> Any:
    """A JSON body as kube decodes it: at most nesting.MAX_DEPTH levels deep (its
    managedFields a few more), integers past int64 as floats. BodyDecodeError otherwise."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit (1024) is far past kext's
            raise BodyDecodeError(f"exceeded max depth of {nesting.MAX_DEPTH}") from None
        raise BodyDecodeError(str(exc)) from None
    # Counting brackets is much cheaper than a walk: most bodies cannot be too deep.
    if (body.count(b"{") + body.count(b"[") > nesting.MAX_DEPTH
            or _LONG_INTEGER.search(body) is not None):
        try:
            nesting.check_object_depth(value)
        except ValueError as exc:
            raise BodyDecodeError(str(exc)) from None
    return value


def decode_yaml(body: bytes) -> Any:
    """A YAML body as kube decodes it (YAMLToJSON: kext.api.yamljson). A body that is JSON,
    as kubectl sends server-side apply patches, takes the fast path."""
    if body.lstrip()[:1] in (b"{", b"["):
        try:
            return decode_json(body)
        except BodyDecodeError:
            pass  # not JSON after all (a YAML flow mapping): read it as YAML
    try:
        # managedFields may nest deeper (nesting.check_object_depth measures them apart)
        value = yamljson.yaml_to_json(
            body, nesting.MAX_DEPTH + nesting.MANAGED_FIELDS_EXTRA_DEPTH + 2, nesting.MAX_DEPTH)
        return nesting.check_object_depth(value)
    except yaml.YAMLError as exc:
        raise BodyDecodeError(
            f"error converting YAML to JSON: yaml: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # YAMLDecodeError and nesting's
        raise BodyDecodeError(f"error converting YAML to JSON: {exc}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A parse error in one line: where and what (PyYAML's own text spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}{problem}"


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
    goes away). The connection calls `serve(writer)`, which runs it and then the `on_end`
    callbacks, or `ended()` when it never starts it. `chunks` reads the same stream as an
    async iterator."""

    run: Callable[[ChunkWriter], Awaitable[None]]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    code: int = 200
    # run once when the stream has ended (or was never started), in the order added
    on_end: list[Callable[[], object]] = field(default_factory=list, repr=False)
    _ended: bool = field(default=False, repr=False, compare=False)
    _chunks: _Pulled | None = field(default=None, repr=False, compare=False)

    async def serve(self, writer: ChunkWriter) -> None:
        """Run the stream on writer until it ends, then the on_end callbacks."""
        try:
            await self.run(writer)
        finally:
            self.ended()

    def ended(self) -> None:
        """The stream is over (or will never start): the on_end callbacks, once."""
        if self._ended:
            return
        self._ended = True
        for callback in self.on_end:
            callback()

    @property
    def chunks(self) -> AsyncIterator[bytes]:
        """The stream's chunks, pulled: for consumers without a connection (tests)."""
        if self._chunks is None:
            self._chunks = _Pulled(self)
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


class _Pulled:
    """A StreamResponse read as an async iterator; closing it before reading ends it."""

    def __init__(self, response: StreamResponse) -> None:
        self.response = response
        self.generator: AsyncGenerator[bytes, None] | None = None

    def __aiter__(self) -> _Pulled:
        return self

    async def __anext__(self) -> bytes:
        if self.generator is None:
            self.generator = _pulled(self.response.serve)
        return await self.generator.__anext__()

    async def aclose(self) -> None:
        if self.generator is not None:
            await self.generator.aclose()
        self.response.ended()


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


def warning_header(text: str) -> tuple[str, str]:
    """A `Warning` response header as kube writes one: code 299, no agent, the text quoted."""
    return "Warning", f"299 - {errors.go_quote(text)}"


def object_response(code: int, obj: Any, target: Target | None = None,
                    warnings: Iterable[str] = ()) -> Response:
    body, content_type = encode(obj, target)
    return Response(code, body, content_type, warning_headers(warnings))


def warning_headers(warnings: Iterable[str]) -> list[tuple[str, str]]:
    """`Warning` headers as kube writes them, one per warning."""
    return [warning_header(w) for w in warnings]


def status_response(error: errors.StatusError) -> Response:
    headers = []
    if error.retry_after_seconds:
        headers.append(("Retry-After", str(error.retry_after_seconds)))
    return Response(error.code, orjson.dumps(error.status()), "application/json", headers)
