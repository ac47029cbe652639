"""kext's twisted.web layer (kext/server/http.py) in memory: raw HTTP/1.1 bytes into the
Site kext serves, over an in-memory transport that presents a TLS client chain, and the
bytes that come back: status lines, headers, Status bodies, the body limit (413), chunked
watch streams read chunk by chunk, and a client that goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import orjson
import pytest
import pytest_asyncio

from kext.api import errors
from kext.server import filters
from kext.server.request import APIRequest, Response, StreamResponse, from_chunks
from kext.server.request_info import parse_request_info
from tests.registry.objects import widget
from tests.server.inmemory import WIDGETS, InMemoryServer, Wire, eventually, parse_response

pytestmark = pytest.mark.asyncio

JSON = [("Content-Type", "application/json")]


@pytest_asyncio.fixture
async def wire(server: InMemoryServer) -> AsyncIterator[Wire]:
    """A connection to the server presenting the admin's client certificate."""
    connection = Wire(server.handler, chain=[server.admin, server.client_ca])
    yield connection
    connection.close()


def status_of(content: bytes) -> dict[str, object]:
    status: dict[str, object] = json.loads(content)
    assert status["kind"] == "Status"
    return status


async def test_an_object_with_its_length_and_type(wire: Wire) -> None:
    wire.send("POST", WIDGETS, orjson.dumps(widget()), JSON)
    created = await wire.response()
    assert created.status == 201
    assert created.header("Content-Type") == "application/json"
    assert created.header("Content-Length") == str(len(created.content))
    assert json.loads(created.content)["metadata"]["name"] == "w"
    # the connection stays open for the next request (HTTP/1.1 keep-alive)
    wire.send("GET", f"{WIDGETS}/w")
    got = await wire.response()
    assert got.status == 200 and json.loads(got.content)["metadata"]["name"] == "w"


async def test_errors_are_status_bodies_on_the_wire(wire: Wire) -> None:
    wire.send("GET", f"{WIDGETS}/missing")
    missing = await wire.response()
    assert missing.status == 404 and missing.reason == "Not Found"
    assert missing.header("Content-Type") == "application/json"
    assert status_of(missing.content)["message"] == 'widgets.example.kext.io "missing" not found'


async def test_a_client_without_a_certificate_is_401(server: InMemoryServer) -> None:
    anonymous = Wire(server.handler)
    try:
        anonymous.send("GET", WIDGETS)
        response = await anonymous.response()
        assert response.status == 401
        assert status_of(response.content)["reason"] == "Unauthorized"
        anonymous.send("GET", "/readyz")
        assert (await anonymous.response()).status == 200
    finally:
        anonymous.close()


async def test_the_client_certificate_is_read_from_the_tls_connection(
        server: InMemoryServer) -> None:
    seen: list[str] = []

    async def whoami(request: APIRequest) -> Response:
        seen.append(request.user.name if request.user else "")
        return Response(200, b"{}")

    chain = filters.chain(whoami, server.server.authenticator, server.server.authorizer,
                          server.server.inflight, 60, server.server.metrics)
    connection = Wire(chain, chain=[server.admin, server.client_ca])
    try:
        connection.send("GET", WIDGETS)
        assert (await connection.response()).status == 200
    finally:
        connection.close()
    assert seen == ["kext-admin"]


async def test_a_body_over_the_limit_is_413(server: InMemoryServer) -> None:
    connection = Wire(server.handler, max_body_bytes=1024, chain=[server.admin])
    try:
        connection.send("POST", WIDGETS, orjson.dumps(widget(tags=["x" * 2000])), JSON)
        response = await connection.response()
        assert response.status == 413
        status = status_of(response.content)
        assert (status["reason"], status["message"]) == (
            "RequestEntityTooLarge", "Request entity too large: limit is 1024")
    finally:
        connection.close()
    assert (await server.request("GET", f"{WIDGETS}/w")).code == 404


async def test_a_chunked_body_over_the_limit_is_413(server: InMemoryServer) -> None:
    connection = Wire(server.handler, max_body_bytes=1024, chain=[server.admin])
    try:
        data = orjson.dumps(widget(tags=["x" * 2000]))
        chunked = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n"
                           for part in (data[:600], data[600:])) + b"0\r\n\r\n"
        connection.send("POST", WIDGETS, chunked,
                        [*JSON, ("Transfer-Encoding", "chunked")], length=False)
        response = await connection.response()
        assert response.status == 413
    finally:
        connection.close()


async def test_a_body_within_the_limit_is_served(server: InMemoryServer) -> None:
    connection = Wire(server.handler, max_body_bytes=4096, chain=[server.admin])
    try:
        connection.send("POST", WIDGETS, orjson.dumps(widget(tags=["x" * 1000])), JSON)
        assert (await connection.response()).status == 201
    finally:
        connection.close()


async def test_headers_reach_the_handler_and_come_back(server: InMemoryServer) -> None:
    seen: list[APIRequest] = []

    async def echo(request: APIRequest) -> Response:
        seen.append(request)
        return Response(200, b"{}", headers=[("Warning", '299 - "caf\u00e9 is unknown"'),
                                             ("Retry-After", "3")])

    connection = Wire(echo)
    try:
        connection.send("GET", "/apis/x/v1/things?b=2&a=1&a=3&empty=",
                        headers=[("Accept", "application/json"), ("X-Remote-Group", "one"),
                                 ("X-Remote-Group", "two")])
        response = await connection.response()
    finally:
        connection.close()
    [request] = seen
    assert (request.method, request.path) == ("GET", "/apis/x/v1/things")
    assert request.query == {"b": ["2"], "a": ["1", "3"], "empty": [""]}
    assert request.headers["x-remote-group"] == "one,two"
    assert ("x-remote-group", "one") in request.raw_headers
    assert ("x-remote-group", "two") in request.raw_headers
    assert request.remote == "127.0.0.1"
    assert request.peer_certificates == []  # the client presented no certificate
    # header values go out as UTF-8 (http.client reads them as latin-1)
    assert (response.header("Warning") or "").encode("latin-1").decode() == \
        '299 - "café is unknown"'
    assert response.header("Retry-After") == "3"


async def test_head_answers_headers_only(server: InMemoryServer) -> None:
    connection = Wire(server.handler, chain=[server.admin])
    try:
        connection.send("HEAD", "/readyz")
        data = await connection.transport.until(lambda d: d.endswith(b"\r\n\r\n"))
    finally:
        connection.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"text/plain; charset=utf-8" in data and not data.endswith(b"ok")


async def test_an_unexpected_error_is_a_500_status(server: InMemoryServer) -> None:
    async def broken(request: APIRequest) -> Response:
        raise RuntimeError("boom")

    connection = Wire(broken)
    try:
        connection.send("GET", "/anything")
        response = await connection.response()
    finally:
        connection.close()
    assert response.status == 500
    status = status_of(response.content)
    assert (status["reason"], status["message"]) == (
        "InternalError", "Internal error occurred: unexpected server error")
    assert b"boom" not in response.content


async def test_a_watch_is_chunked_one_event_per_chunk(server: InMemoryServer,
                                                      wire: Wire) -> None:
    await server.request("POST", WIDGETS, widget("a"))
    wire.send("GET", f"{WIDGETS}?watch=true")
    head = await wire.transport.until(lambda d: b"\r\n\r\n" in d)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in head
    assert b"Cache-Control: no-cache, private\r\n" in head

    def chunks(data: bytes) -> list[bytes]:
        rest = data.split(b"\r\n\r\n", 1)[1]
        out = []
        while b"\r\n" in rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if len(rest) < n + 2:
                break
            out.append(rest[:n])
            rest = rest[n + 2:]
        return out

    data = await wire.transport.until(lambda d: len(chunks(d)) >= 1)
    [first] = chunks(data)
    assert json.loads(first)["type"] == "ADDED" and first.endswith(b"\n")
    await server.request("POST", WIDGETS, widget("b"))
    data = await wire.transport.until(lambda d: len(chunks(d)) >= 2)
    second = chunks(data)[1]
    assert json.loads(second)["object"]["metadata"]["name"] == "b"


async def test_a_client_going_away_ends_its_watch(server: InMemoryServer, wire: Wire) -> None:
    await server.request("POST", WIDGETS, widget("a"))
    cache = server.server.serving.caches[0]
    wire.send("GET", f"{WIDGETS}?watch=true")
    await wire.transport.until(lambda d: b'"ADDED"' in d)
    assert cache.watcher_count == 1
    wire.close()
    await eventually(lambda: cache.watcher_count == 0)


async def test_a_stream_that_fails_midway_ends_the_response(server: InMemoryServer) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type":"ADDED"}\n'
        raise errors.internal_error("storage went away")

    async def stream(request: APIRequest) -> StreamResponse:
        return StreamResponse(from_chunks(chunks()))

    connection = Wire(stream, chain=[server.admin])
    try:
        connection.send("GET", "/apis/x/v1/things?watch=true")
        data = await connection.transport.until(lambda d: d.endswith(b"0\r\n\r\n"))
    finally:
        connection.close()
    response = parse_response(data)
    assert response is not None and response.status == 200
    assert response.content == b'{"type":"ADDED"}\n'


async def test_the_handler_sees_what_the_request_info_says(server: InMemoryServer) -> None:
    seen: list[APIRequest] = []

    async def record(request: APIRequest) -> Response:
        seen.append(request)
        return Response(204)

    connection = Wire(record)
    try:
        connection.send("DELETE", "/apis/example.kext.io/v1alpha1/namespaces/ns/widgets")
        await connection.response()
    finally:
        connection.close()
    assert seen[0].info == parse_request_info(
        "DELETE", "/apis/example.kext.io/v1alpha1/namespaces/ns/widgets", {})
    assert seen[0].info.verb == "deletecollection"


async def test_a_client_that_does_not_read_pauses_its_stream(server: InMemoryServer,
                                                             wire: Wire) -> None:
    await server.request("POST", WIDGETS, widget("a"))
    wire.send("GET", f"{WIDGETS}?watch=true")
    await wire.transport.until(lambda d: b'"name":"a"' in d)
    producer = wire.transport.producer
    assert producer is not None and wire.transport.streaming
    producer.pauseProducing()  # what a full send buffer does
    await server.request("POST", WIDGETS, widget("b"))  # held by the watch while paused
    await server.request("POST", WIDGETS, widget("c"))
    with pytest.raises(TimeoutError):
        await wire.transport.until(lambda d: b'"name":"b"' in d, timeout=0.05)
    producer.resumeProducing()
    data = await wire.transport.until(lambda d: b'"name":"c"' in d)
    assert data.index(b'"name":"b"') < data.index(b'"name":"c"')


async def test_stopping_lets_requests_in_flight_finish(server: InMemoryServer) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow(request: APIRequest) -> Response:
        entered.set()
        await release.wait()
        return Response(200, b"{}")

    s = server.server
    chain = filters.chain(slow, s.authenticator, s.authorizer, s.inflight, 60, s.metrics)
    in_flight = asyncio.ensure_future(chain(server.api_request("GET", WIDGETS)))
    await asyncio.wait_for(entered.wait(), 5)
    stopping = asyncio.ensure_future(s.stop())
    await eventually(lambda: s.shutting_down)
    assert (await server.request("GET", "/readyz")).code == 500  # load balancers move away
    assert not stopping.done() and s.serving.caches[0].ready  # waiting for the request
    release.set()
    assert (await in_flight).code == 200
    await asyncio.wait_for(stopping, 5)
    assert not s.serving.caches[0].ready


async def test_a_post_is_not_parsed_for_an_html_form(wire: Wire,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """twisted.web looks for HTML forms in every POST (parsing its Content-Type through the
    stdlib's email package: 7 % of a create's CPU); kext reads bodies itself."""
    def no_form_parsing(line: bytes) -> bytes:
        raise AssertionError("twisted.web parsed the Content-Type of a POST")

    monkeypatch.setattr("twisted.web.http._parseContentType", no_form_parsing)
    wire.send("POST", WIDGETS, orjson.dumps(widget()), JSON)
    assert (await wire.response()).status == 201
