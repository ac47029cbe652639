"""The filter chain in memory, built from a completed config as the server builds it:
authentication (anonymous only on the always-allowed paths unless enabled), authorization
(403 and 500 as kube-apiserver answers them), and metrics kept per server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision
from kext.certs import KeyPair, issue_cert, new_ca
from kext.config import EtcdConfig, ServerConfig
from kext.metrics import Metrics
from kext.server import filters
from kext.server.config import CompletedConfig, new_config
from kext.server.process import ServingCertificates
from kext.server.request import AnyResponse, APIRequest, Handler, Response
from kext.server.request_info import parse_request_info
from tests.registry.objects import widget
from tests.server.inmemory import InMemoryServer, header

pytestmark = pytest.mark.asyncio

WIDGETS = "/apis/example.kext.io/v1alpha1/namespaces/ns/widgets"


def completed(tmp_path: Path, ca: KeyPair, anonymous: bool = False) -> CompletedConfig:
    ca_file = tmp_path / "client-ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    options = ServerConfig()
    options.authentication.anonymous = anonymous
    serving = ServingCertificates("unused.crt", "unused.key", (str(ca_file),),
                                  "https://127.0.0.1:8443", "")
    return new_config(options, serving, EtcdConfig(["http://127.0.0.1:2379"])).complete()


async def served(request: APIRequest) -> AnyResponse:
    assert request.user is not None
    return Response(200, request.user.name.encode(), "text/plain")


def build(config: CompletedConfig, metrics: Metrics,
          authorizer: Authorizer | None = None) -> Handler:
    return filters.chain(
        served, config.new_authenticator(), authorizer or config.new_authorizer(),
        filters.InFlight(10, 10, metrics), 60, metrics,
    )


def samples(metrics: Metrics, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(
        metrics.exposition().decode()) for s in family.samples if s.name == name]


def request(path: str, client: KeyPair | None = None) -> APIRequest:
    peer = [client.cert.public_bytes(serialization.Encoding.DER)] if client else []
    return APIRequest("GET", path, {}, {}, b"", parse_request_info("GET", path, {}),
                      peer_certificates=peer)


def status(response: AnyResponse) -> dict[str, object]:
    assert isinstance(response, Response)
    return json.loads(response.body)  # type: ignore[no-any-return]


async def test_without_credentials_only_health_is_served(tmp_path: Path) -> None:
    ca = new_ca("clients")
    chain = build(completed(tmp_path, ca), Metrics())
    for path in ("/readyz", "/readyz/etcd", "/livez", "/healthz/ping"):
        response = await chain(request(path))
        assert (response.code, response.body) == (200, b"system:anonymous"), path
    for path in (WIDGETS, "/metrics", "/apis"):
        response = await chain(request(path))
        assert response.code == 401
        assert status(response)["reason"] == "Unauthorized"
    admin = issue_cert(ca, "kext-admin", ["system:masters"], client=True)
    response = await chain(request(WIDGETS, admin))
    assert (response.code, response.body) == (200, b"kext-admin")


async def test_anonymous_enabled_serves_every_path(tmp_path: Path) -> None:
    chain = build(completed(tmp_path, new_ca("clients"), anonymous=True), Metrics())
    response = await chain(request(WIDGETS))
    assert (response.code, response.body) == (200, b"system:anonymous")


class Denying:
    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        return Decision.NO_OPINION, "no RBAC rule matched"


class Unreachable:
    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        raise ConnectionError("connection refused")


async def test_a_denied_request_is_a_forbidden_status_in_kubes_words(tmp_path: Path) -> None:
    ca = new_ca("clients")
    bob = issue_cert(ca, "bob", client=True)
    chain = build(completed(tmp_path, ca), Metrics(), authorizer=Denying())
    body = status(await chain(request(f"{WIDGETS}/w1", bob)))
    assert body["code"] == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'widgets.example.kext.io "w1" is forbidden: User "bob" cannot get resource "widgets" '
        'in API group "example.kext.io" in the namespace "ns": no RBAC rule matched')
    assert body["details"] == {"name": "w1", "group": "example.kext.io", "kind": "widgets"}
    body = status(await chain(request("/metrics", bob)))
    assert body["message"] == (
        'forbidden: User "bob" cannot get path "/metrics": no RBAC rule matched')


async def test_an_authorizer_that_cannot_decide_fails_closed(tmp_path: Path) -> None:
    ca = new_ca("clients")
    chain = build(completed(tmp_path, ca), Metrics(), authorizer=Unreachable())
    response = await chain(request(WIDGETS, issue_cert(ca, "bob", client=True)))
    assert response.code == 500
    assert "connection refused" in str(status(response)["message"])


async def test_each_server_counts_its_own_requests(tmp_path: Path) -> None:
    ca = new_ca("clients")
    admin = issue_cert(ca, "kext-admin", ["system:masters"], client=True)
    config = completed(tmp_path, ca)
    first, second = Metrics(), Metrics()
    first_chain, _ = build(config, first), build(config, second)
    for _ in range(3):
        assert (await first_chain(request(WIDGETS, admin))).code == 200
    assert samples(first, "apiserver_request_total") == [({
        "verb": "LIST", "dry_run": "", "group": "example.kext.io", "version": "v1alpha1",
        "resource": "widgets", "subresource": "", "scope": "namespace",
        "component": "apiserver", "code": "200"}, 3.0)]
    assert samples(second, "apiserver_request_total") == []
    assert ({"request_kind": "readOnly"}, 0.0) in samples(
        second, "apiserver_current_inflight_requests")


# -- the chain of a whole in-memory server (tests/server/inmemory.py)


def front_proxy(ca: KeyPair) -> Callable[[ServerConfig, Path], None]:
    """Configure request-header authentication trusting ca for the front proxy's CN."""
    def configure(options: ServerConfig, tmp_path: Path) -> None:
        ca_file = tmp_path / "front-proxy-ca.crt"
        ca_file.write_bytes(ca.cert_pem)
        rh = options.authentication.request_header
        rh.client_ca_file = str(ca_file)
        rh.allowed_names = ["front-proxy-client"]
    return configure


async def echo_user(request: APIRequest) -> AnyResponse:
    """The user a request was served as, and the headers the handler saw."""
    user = request.user
    assert user is not None
    return Response(200, json.dumps({
        "name": user.name, "groups": list(user.groups),
        "extra": {k: list(v) for k, v in user.extra.items()},
        "headers": sorted(request.headers), "raw": sorted(k for k, _ in request.raw_headers),
    }).encode())


def around(server: InMemoryServer, handler: Handler, *, timeout: float = 60) -> Handler:
    """The server's own filter chain around another handler."""
    s = server.server
    return filters.chain(handler, s.authenticator, s.authorizer, s.inflight, timeout,
                         s.metrics)


IDENTITY = {"x-remote-user": "bob", "x-remote-group": "devs",
            "x-remote-extra-scopes": "read", "x-remote-extra-acme.io%2fteam": "blue",
            "accept": "application/json"}


async def test_front_proxy_headers_are_trusted_from_the_proxy_only(tmp_path: Path) -> None:
    proxy_ca = new_ca("front-proxy-ca")
    server = await InMemoryServer.start(tmp_path, configure=front_proxy(proxy_ca))
    try:
        chain = around(server, echo_user)
        proxy = issue_cert(proxy_ca, "front-proxy-client", client=True)
        seen = json.loads(body_bytes(await chain(server.api_request(
            "GET", WIDGETS, headers=IDENTITY, client=proxy))))
        assert seen["name"] == "bob"
        assert seen["groups"] == ["devs", "system:authenticated"]
        assert seen["extra"] == {"scopes": ["read"], "acme.io/team": ["blue"]}
        # the identity headers are gone before any handler sees the request
        assert seen["headers"] == seen["raw"] == ["accept"]

        # the proxy's CA but another CN: not the front proxy, and no x509 client either
        other = issue_cert(proxy_ca, "someone-else", client=True)
        response = await chain(server.api_request("GET", WIDGETS, headers=IDENTITY,
                                                  client=other))
        assert response.code == 401
        # an x509 client of the client CA cannot claim an identity by headers
        seen = json.loads(body_bytes(await chain(server.api_request("GET", WIDGETS,
                                                                    headers=IDENTITY))))
        assert seen["name"] == "kext-admin" and seen["headers"] == ["accept"]
        # the proxy without a user header identifies nobody
        response = await chain(server.api_request("GET", WIDGETS, client=proxy))
        assert response.code == 401
    finally:
        await server.stop()


async def test_unauthorized_is_kubes_status(server: InMemoryServer) -> None:
    response = await server.request("GET", WIDGETS, anonymous=True)
    assert response.code == 401
    assert status(response) == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": "Unauthorized",
                                "reason": "Unauthorized", "code": 401}
    stranger = issue_cert(new_ca("another-ca"), "mallory", client=True)
    assert (await server.request("GET", WIDGETS, client=stranger)).code == 401


async def test_a_user_outside_the_privileged_groups_is_allowed_by_always_allow(
        server: InMemoryServer) -> None:
    alice = issue_cert(server.client_ca, "alice", ["devs"], client=True)
    chain = around(server, echo_user)
    seen = json.loads(body_bytes(await chain(server.api_request("GET", WIDGETS,
                                                                client=alice))))
    assert (seen["name"], seen["groups"]) == ("alice", ["devs", "system:authenticated"])


async def test_past_the_in_flight_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    def limits(options: ServerConfig, _: Path) -> None:
        options.serving.max_requests_inflight = 1
        options.serving.max_mutating_requests_inflight = 1

    server = await InMemoryServer.start(tmp_path, configure=limits)
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: APIRequest) -> AnyResponse:
        started.set()
        await release.wait()
        return Response(200, b"{}")

    chain = around(server, slow)
    try:
        first = asyncio.ensure_future(chain(server.api_request("GET", WIDGETS)))
        await asyncio.wait_for(started.wait(), 5)
        refused = await chain(server.api_request("GET", f"{WIDGETS}/w"))
        assert refused.code == 429
        assert header(refused, "Retry-After") == "1"
        assert status(refused)["message"] == "Too many requests, please try again later."
        assert status(refused)["details"] == {"retryAfterSeconds": 1}
        # mutating requests have their own limit, and watches are not counted
        started.clear()
        write = asyncio.ensure_future(chain(server.api_request("POST", WIDGETS, widget())))
        await asyncio.wait_for(started.wait(), 5)
        assert server.server.inflight.counts == {"readonly": 1, "mutating": 1}
        watch = asyncio.ensure_future(chain(server.api_request("GET", f"{WIDGETS}?watch=1")))
        assert not await server.server.inflight.drained(0.01)
        release.set()
        assert [r.code for r in await asyncio.gather(first, write, watch)] == [200, 200, 200]
        assert await server.server.inflight.drained(1)
        assert (await chain(server.api_request("GET", WIDGETS))).code == 200
    finally:
        release.set()
        await server.stop()


async def test_a_request_past_the_timeout_is_504(server: InMemoryServer) -> None:
    forever = asyncio.Event()
    cancelled = []

    async def stuck(request: APIRequest) -> AnyResponse:
        try:
            await forever.wait()
        except asyncio.CancelledError:
            cancelled.append(request.path)
            raise
        return Response(200, b"{}")

    chain = around(server, stuck, timeout=0.01)
    response = await chain(server.api_request("GET", WIDGETS))
    assert response.code == 504
    assert header(response, "Retry-After") == "1"
    assert status(response)["message"] == (
        "Timeout: request did not complete within the allotted timeout")
    assert status(response)["reason"] == "Timeout"
    assert cancelled == [WIDGETS]  # the handler was stopped, not left running
    assert server.server.inflight.counts == {"readonly": 0, "mutating": 0}


async def test_a_watch_is_not_subject_to_the_request_timeout(server: InMemoryServer) -> None:
    async def watch(request: APIRequest) -> AnyResponse:
        await asyncio.sleep(0.05)  # longer than the timeout
        return Response(200, b"{}")

    chain = around(server, watch, timeout=0.01)
    assert (await chain(server.api_request("GET", f"{WIDGETS}?watch=true"))).code == 200


async def test_an_unexpected_error_is_a_logged_500(server: InMemoryServer,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: APIRequest) -> AnyResponse:
        raise KeyError("secret detail")

    response = await around(server, broken)(server.api_request("GET", WIDGETS))
    assert response.code == 500
    assert status(response)["message"] == "Internal error occurred: an unexpected error occurred"
    assert "secret detail" not in str(status(response))
    assert any("internal error serving GET" in r.getMessage() for r in caplog.records)


async def test_request_metrics_name_kubes_verbs(server: InMemoryServer) -> None:
    await server.request("POST", f"{WIDGETS}?dryRun=All", widget())
    await server.request("PATCH", f"{WIDGETS}/w?fieldManager=k", json.dumps(widget()).encode(),
                         headers={"content-type": "application/apply-patch+yaml"})
    await server.request("GET", f"{WIDGETS}/w/status")
    await server.request("GET", "/apis/example.kext.io/v1alpha1/gadgets")
    verbs = {(s["verb"], s["dry_run"], s["subresource"], s["scope"], s["code"])
             for s, _ in samples(server.server.metrics, "apiserver_request_total")}
    assert verbs == {("POST", "All", "", "namespace", "201"),
                     ("APPLY", "", "", "resource", "201"),
                     ("GET", "", "status", "resource", "200"),
                     ("LIST", "", "", "cluster", "200")}


def body_bytes(response: AnyResponse) -> bytes:
    assert isinstance(response, Response)
    return response.body
