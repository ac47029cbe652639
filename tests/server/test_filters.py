"""The filter chain in memory, built from a completed config as the server builds it:
authentication (anonymous only on the always-allowed paths unless enabled), authorization
(403 and 500 as kube-apiserver answers them), metrics kept per server and labelled as kube
labels them, requests turned away (429, 504, shutdown), audit stages and log lines."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from kext.api import errors
from kext.audit import AuditEvent
from kext.audit.policy import parse_policy
from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision
from kext.certs import KeyPair, issue_cert, new_ca
from kext.config import EtcdConfig, ServerConfig
from kext.metrics import Metrics
from kext.server import filters
from kext.server.config import CompletedConfig, new_config
from kext.server.process import ServingCertificates
from kext.server.request import (
    AnyResponse,
    APIRequest,
    Handler,
    Response,
    StreamResponse,
    from_chunks,
)
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
    return json.loads(response.body)


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
    assert verbs == {("POST", "All", "", "resource", "201"),
                     ("APPLY", "", "", "resource", "201"),
                     ("GET", "", "status", "resource", "200"),
                     ("LIST", "", "", "cluster", "200")}


def body_bytes(response: AnyResponse) -> bytes:
    assert isinstance(response, Response)
    return response.body


# -- what the chain records: terminations, audit stages, log lines


class Recorder:
    """An audit sink keeping what it is handed."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def process(self, event: AuditEvent) -> None:
        self.events.append(event)


def admin_request(ca: KeyPair, method: str = "GET", path: str = WIDGETS,
                  **headers: str) -> APIRequest:
    admin = issue_cert(ca, "kext-admin", ["system:masters"], client=True)
    peer = [admin.cert.public_bytes(serialization.Encoding.DER)]
    uri, path = path, path.partition("?")[0]
    return APIRequest(method, path, {}, dict(headers), b"",
                      parse_request_info(method, path, {}), peer_certificates=peer,
                      remote="127.0.0.1", uri=uri)


def terminations(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {(s[0]["verb"], s[0]["code"]): s[1]
            for s in samples(metrics, "apiserver_request_terminations_total")}


async def test_requests_turned_away_in_self_defense_are_counted(tmp_path: Path) -> None:
    ca = new_ca("clients")
    config = completed(tmp_path, ca)
    metrics = Metrics()
    release = asyncio.Event()

    async def slow(request: APIRequest) -> AnyResponse:
        await release.wait()
        return Response(201)

    inflight = filters.InFlight(10, 1, metrics)
    chain = filters.chain(slow, config.new_authenticator(), config.new_authorizer(),
                          inflight, 0.05, metrics)
    first = asyncio.ensure_future(chain(admin_request(ca, "POST")))
    while not inflight.counts["mutating"]:
        await asyncio.sleep(0)
    refused = await chain(admin_request(ca, "POST"))
    assert refused.code == 429 and ("Retry-After", "1") in refused.headers
    timed_out = await first  # past the 50 ms request timeout
    assert timed_out.code == 504
    assert terminations(metrics) == {("POST", "429"): 1, ("POST", "504"): 1}
    totals = {s[0]["code"]: s[1] for s in samples(metrics, "apiserver_request_total")}
    assert totals == {"429": 1, "504": 1}
    release.set()


async def test_shutdown_turns_new_requests_away_but_not_probes(tmp_path: Path) -> None:
    ca = new_ca("clients")
    config = completed(tmp_path, ca)
    metrics = Metrics()
    closed = False
    chain = filters.chain(served, config.new_authenticator(), config.new_authorizer(),
                          filters.InFlight(10, 10, metrics), 60, metrics,
                          not_accepting=lambda: closed)
    assert (await chain(admin_request(ca))).code == 200
    closed = True
    refused = await chain(admin_request(ca))
    assert refused.code == 429
    assert refused.body == b"The apiserver is shutting down, please try again later.\n"
    assert ("Retry-After", "5") in refused.headers
    assert (await chain(request("/readyz"))).code == 200


async def test_every_response_carries_its_audit_id(tmp_path: Path) -> None:
    ca = new_ca("clients")
    chain = build(completed(tmp_path, ca), Metrics())
    response = await chain(request(WIDGETS))  # refused: 401
    generated = dict(response.headers)["Audit-ID"]
    assert response.code == 401 and len(generated) == 36  # a UUID
    given = await chain(admin_request(ca, **{"audit-id": "from-the-aggregator"}))
    assert dict(given.headers)["Audit-ID"] == "from-the-aggregator"


def audited(tmp_path: Path, handler: Handler, rules: list[dict[str, object]],
            authorizer: Authorizer | None = None) -> tuple[Handler, Recorder, Metrics]:
    config = completed(tmp_path, CA)
    metrics = Metrics()
    sink = Recorder()
    policy = parse_policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": rules})
    chain = filters.chain(handler, config.new_authenticator(),
                          authorizer or config.new_authorizer(),
                          filters.InFlight(10, 10, metrics), 60, metrics,
                          auditor=filters.Auditor(policy, sink, metrics))
    return chain, sink, metrics


CA = new_ca("clients")


async def test_audit_stages_follow_the_response(tmp_path: Path) -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield b'{"type":"ADDED"}\n'

    async def handler(request: APIRequest) -> AnyResponse:
        if request.info.verb == "watch":
            return StreamResponse(from_chunks(stream()))
        if request.info.name == "boom":
            raise RuntimeError("a bug")
        return Response(200, b'{"kind":"Widget"}')

    chain, sink, metrics = audited(tmp_path, handler, [{"level": "Metadata"}])
    assert (await chain(admin_request(CA))).code == 200
    assert [e.stage for e in sink.events] == ["RequestReceived", "ResponseComplete"]
    done = sink.events[-1]
    assert done.annotations == {"authorization.k8s.io/decision": "allow",
                                "authorization.k8s.io/reason": ""}
    assert done.user is not None and done.user.name == "kext-admin"
    assert done.source_ips == ["127.0.0.1"] and done.response_code == 200
    sink.events.clear()

    query = {"watch": ["true"]}
    watch = await chain(APIRequest("GET", WIDGETS, query, {}, b"",
                                   parse_request_info("GET", WIDGETS, query),
                                   peer_certificates=admin_request(CA).peer_certificates))
    assert isinstance(watch, StreamResponse)
    assert [e.stage for e in sink.events] == ["RequestReceived", "ResponseStarted"]
    assert [c async for c in watch.chunks] == [b'{"type":"ADDED"}\n']
    assert [e.stage for e in sink.events][-1] == "ResponseComplete"
    sink.events.clear()

    failed = await chain(admin_request(CA, path=f"{WIDGETS}/boom"))
    assert failed.code == 500
    assert [e.stage for e in sink.events] == ["RequestReceived", "Panic"]
    assert sink.events[-1].response_status == {
        "metadata": {}, "status": "Failure", "message": "APIServer panic'd: a bug",
        "reason": "InternalError", "code": 500}
    levels = {s[0]["level"]: s[1] for s in samples(metrics, "apiserver_audit_level_total")}
    assert levels == {"Metadata": 3}
    assert samples(metrics, "apiserver_audit_event_total") == [({}, 7.0)]  # 2 + 3 + 2


async def test_a_forbidden_request_is_audited_with_the_decision(tmp_path: Path) -> None:
    chain, sink, _ = audited(tmp_path, served, [{"level": "Metadata"}], authorizer=Denying())
    bob = issue_cert(CA, "bob", client=True)
    assert (await chain(request(f"{WIDGETS}/w1", bob))).code == 403
    done = sink.events[-1]
    assert done.stage == "ResponseComplete" and done.response_code == 403
    assert done.annotations == {"authorization.k8s.io/decision": "forbid",
                                "authorization.k8s.io/reason": "no RBAC rule matched"}
    assert done.response_status is not None and done.response_status["reason"] == "Forbidden"
    sink.events.clear()
    assert (await chain(request(WIDGETS))).code == 401  # nobody: one ResponseStarted event
    assert [(e.stage, e.user, e.response_code) for e in sink.events] == [
        ("ResponseStarted", None, 401)]


async def test_request_lines_are_debug_but_server_errors_and_slow_requests_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: APIRequest) -> AnyResponse:
        if request.info.name == "slow":
            request.received -= 2  # as if it had arrived two seconds ago
        if request.info.name == "broken":
            raise errors.service_unavailable("etcd is down")
        return Response(200)

    config = completed(tmp_path, CA)
    metrics = Metrics()
    chain = filters.chain(handler, config.new_authenticator(), config.new_authorizer(),
                          filters.InFlight(10, 10, metrics), 60, metrics)
    caplog.set_level(logging.DEBUG, logger="kext.httplog")
    for name in ("fine", "slow", "broken"):
        await chain(admin_request(CA, path=f"{WIDGETS}/{name}?access_token=s3cret",
                                  **{"user-agent": "kubectl/v1.30"}))
    records = [(r.levelname, r.fields["URI"], r.fields["resp"])
               for r in caplog.records if r.name == "kext.httplog"]
    assert [(level, code) for level, _, code in records] == [
        ("DEBUG", 200), ("INFO", 200), ("INFO", 503)]
    fields = caplog.records[0].fields
    assert fields["verb"] == "GET" and fields["user"] == "kext-admin"
    assert fields["userAgent"] == "kubectl/v1.30" and fields["srcIP"] == "127.0.0.1"
    assert fields["audit-ID"] and fields["latency"].endswith(("s", "ms", "µs"))
    assert "s3cret" not in caplog.text


async def test_kubes_verb_scope_and_dry_run_labels() -> None:
    names = ("verb", "dry_run", "group", "version", "resource", "subresource", "scope",
             "component")

    def labels(method: str, path: str, query: dict[str, list[str]] | None = None,
               content_type: str = "") -> dict[str, str] | None:
        q = query or {}
        headers = {"content-type": content_type} if content_type else {}
        r = APIRequest(method, path, q, headers, b"", parse_request_info(method, path, q))
        found = filters.request_labels(r, {("example.kext.io", "v1alpha1", "widgets"):
                                           frozenset({"", "status"})})
        return None if found is None else dict(zip(names, found, strict=True))

    def pick(method: str, path: str, *keys: str, **kwargs: object) -> tuple[str, ...]:
        found = labels(method, path, **kwargs)
        assert found is not None
        return tuple(found[k] for k in keys)

    cluster = "/apis/example.kext.io/v1alpha1/widgets"
    assert labels("POST", WIDGETS) == {  # a create is resource-scoped, as in kube
        "verb": "POST", "dry_run": "", "group": "example.kext.io", "version": "v1alpha1",
        "resource": "widgets", "subresource": "", "scope": "resource", "component": "apiserver"}
    assert pick("GET", WIDGETS, "verb", "scope") == ("LIST", "namespace")
    assert pick("GET", cluster, "verb", "scope") == ("LIST", "cluster")
    assert pick("HEAD", f"{WIDGETS}/w", "verb", "scope") == ("GET", "resource")
    assert pick("GET", WIDGETS, "verb", query={"watch": ["1"]}) == ("WATCH",)
    assert pick("GET", "/apis/example.kext.io/v1alpha1/watch/namespaces/ns/widgets",
                "verb") == ("WATCH",)
    assert pick("PATCH", f"{WIDGETS}/w", "verb",
                content_type="application/apply-patch+yaml") == ("APPLY",)
    assert pick("DELETE", WIDGETS, "verb", "scope") == ("DELETE", "namespace")
    assert pick("POST", WIDGETS, "dry_run", query={"dryRun": ["All"]}) == ("All",)
    assert pick("POST", WIDGETS, "dry_run", query={"dryRun": ["Some"]}) == ("invalid",)
    assert pick("PUT", f"{WIDGETS}/w/status", "subresource") == ("status",)
    assert pick("BREW", f"{WIDGETS}/w", "verb") == ("other",)
    assert labels("GET", f"{WIDGETS}/w/scale") is None  # not served: not counted
    assert labels("GET", "/apis/example.kext.io/v1alpha1/nothings") is None
    assert pick("GET", "/healthz/", "verb", "subresource", "scope", "component") == (
        "GET", "/healthz", "", "")
    assert pick("GET", "/apis", "subresource", "component") == ("/apis", "apiserver")
    assert labels("GET", "/metrics") is None and labels("GET", "/openapi/v2") is None
