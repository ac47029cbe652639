"""The filter chain's order, in memory, as kube-apiserver's: authentication (401) →
impersonation (403) → max-in-flight (429) → authorization (403) → handler; and what the
handler gets: no credentials, whichever authenticator identified the request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from kext.auth.authorization.authorizer import Attributes, Decision
from kext.certs import KeyPair, issue_cert, new_ca
from kext.config import EtcdConfig, ServerConfig
from kext.metrics import Metrics
from kext.server import filters
from kext.server.config import new_config
from kext.server.process import ServingCertificates
from kext.server.request import AnyResponse, APIRequest, Response
from kext.server.request_info import parse_request_info

pytestmark = pytest.mark.asyncio

WIDGETS = "/apis/example.kext.io/v1alpha1/namespaces/default/widgets"


class Asked:
    """Allows everything but impersonating; counts the requests it authorizes."""

    def __init__(self) -> None:
        self.requests = 0

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        if attributes.verb == "impersonate":
            return Decision.NO_OPINION, ""
        self.requests += 1
        return Decision.ALLOW, ""


def request(client: KeyPair, headers: list[tuple[str, str]]) -> APIRequest:
    return APIRequest("GET", WIDGETS, {}, {k: v for k, v in headers}, b"",
                      parse_request_info("GET", WIDGETS, {}),
                      peer_certificates=[client.cert.public_bytes(serialization.Encoding.DER)],
                      raw_headers=headers)


def message(response: AnyResponse) -> str:
    assert isinstance(response, Response)
    return str(json.loads(response.body)["message"])


async def test_filters_run_in_kubes_order_and_the_handler_sees_no_credentials(
        tmp_path: Path) -> None:
    client_ca, proxy_ca = new_ca("clients"), new_ca("front-proxy")
    (tmp_path / "clients.crt").write_bytes(client_ca.cert_pem)
    (tmp_path / "proxy.crt").write_bytes(proxy_ca.cert_pem)
    options = ServerConfig()
    options.authentication.request_header.client_ca_file = str(tmp_path / "proxy.crt")
    serving = ServingCertificates("unused.crt", "unused.key",
                                  (str(tmp_path / "clients.crt"), str(tmp_path / "proxy.crt")),
                                  "https://127.0.0.1:8443", "")
    config = new_config(options, serving, EtcdConfig(["http://127.0.0.1:2379"])).complete()
    release = asyncio.Event()
    served: list[APIRequest] = []

    async def handler(request: APIRequest) -> AnyResponse:
        served.append(request)
        await release.wait()
        return Response(200, b"ok", "text/plain")

    metrics, authorizer = Metrics(), Asked()
    chain = filters.chain(handler, config.new_security(metrics).authenticator, authorizer,
                          filters.InFlight(1, 1, metrics), 60, metrics)
    alice = issue_cert(client_ca, "alice", client=True)
    proxy = issue_cert(proxy_ca, "front-proxy-client", client=True)
    stranger = issue_cert(new_ca("unknown"), "stranger", client=True)
    # an x509 user whose request also carries front-proxy headers and a token
    smuggled = [("x-remote-user", "admin"), ("x-remote-group", "system:masters"),
                ("x-remote-extra-scopes", "all"), ("authorization", "Bearer t"),
                ("accept", "application/json")]
    first = asyncio.ensure_future(chain(request(alice, smuggled)))
    while not served:
        await asyncio.sleep(0)
    (seen,) = served
    assert seen.user is not None and seen.user.name == "alice"
    assert seen.raw_headers == [("accept", "application/json")]
    assert seen.headers == {"accept": "application/json"}
    # the one in-flight slot is taken: authentication still answers first ...
    response = await chain(request(stranger, []))
    assert response.code == 401
    # ... then impersonation, before the in-flight limit ...
    response = await chain(request(proxy, [("x-remote-user", "bob"),
                                           ("impersonate-user", "root")]))
    assert response.code == 403 and message(response).startswith(
        'users "root" is forbidden: User "bob" cannot impersonate')
    # ... which answers before authorization is asked
    response = await chain(request(proxy, [("x-remote-user", "bob")]))
    assert response.code == 429 and authorizer.requests == 1
    release.set()
    assert (await first).code == 200
