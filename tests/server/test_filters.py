"""The filter chain in memory, built from a completed config as the server builds it:
authentication (anonymous only on the always-allowed paths unless enabled), authorization
(403 and 500 as kube-apiserver answers them), and metrics kept per server."""

from __future__ import annotations

import json
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
