"""Authentication in memory: x509 and front-proxy certificates, anonymous on the
always-allowed paths only, and each authenticator's own cache of verified certificates."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from kext.auth.authentication import (
    AnonymousAuthenticator,
    Credentials,
    RequestHeaderAuthenticator,
    UnionAuthenticator,
    X509Authenticator,
)
from kext.auth.paths import AllowedPaths
from kext.auth.user import ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED
from kext.certs import KeyPair, issue_cert, new_ca

pytestmark = pytest.mark.asyncio


def der(pair: KeyPair) -> bytes:
    return pair.cert.public_bytes(serialization.Encoding.DER)


def credentials(pair: KeyPair | None = None, path: str = "/apis",
                headers: list[tuple[str, str]] | None = None) -> Credentials:
    return Credentials([der(pair)] if pair else [], headers or [], path)


async def test_a_certificate_is_trusted_only_by_the_authenticator_of_its_ca() -> None:
    ca, other_ca = new_ca("clients"), new_ca("other clients")
    alice = issue_cert(ca, "alice", ["team-a"], client=True)
    mine, theirs = X509Authenticator([ca.cert]), X509Authenticator([other_ca.cert])
    for _ in range(2):  # the second time from each authenticator's cache
        user = await mine.authenticate(credentials(alice))
        assert user is not None and (user.name, user.groups) == ("alice", ("team-a",
                                                                           AUTHENTICATED))
        assert await theirs.authenticate(credentials(alice)) is None


async def test_front_proxy_headers_need_the_request_header_ca() -> None:
    proxy_ca, client_ca = new_ca("front-proxy"), new_ca("clients")
    proxy = issue_cert(proxy_ca, "front-proxy-client", client=True)
    impostor = issue_cert(client_ca, "front-proxy-client", client=True)
    headers = [("x-remote-user", "bob"), ("x-remote-group", "devs, ops")]
    request_header = RequestHeaderAuthenticator(
        [proxy_ca.cert], ["front-proxy-client"], ["X-Remote-User"], ["X-Remote-Group"],
        ["X-Remote-Extra-"],
    )
    union = UnionAuthenticator([request_header, X509Authenticator([client_ca.cert])],
                               None, request_header)
    bob = await union.authenticate(credentials(proxy, headers=headers))
    assert bob is not None and (bob.name, bob.groups) == ("bob", ("devs", "ops", AUTHENTICATED))
    # signed by the client CA: an x509 user named by its CN, the headers ignored
    other = await union.authenticate(credentials(impostor, headers=headers))
    assert other is not None and other.name == "front-proxy-client"


async def test_anonymous_only_on_the_always_allowed_paths() -> None:
    ca = new_ca("clients")
    paths = AllowedPaths(["/healthz", "/livez", "/readyz", "/debug/*"])
    union = UnionAuthenticator([X509Authenticator([ca.cert])], AnonymousAuthenticator(paths))
    for path in ("/readyz", "/readyz/etcd", "/livez", "/debug/pprof/heap"):
        user = await union.authenticate(credentials(path=path))
        assert user is not None and (user.name, user.groups) == (ANONYMOUS, (UNAUTHENTICATED,))
    for path in ("/apis", "/metrics", "/readyzz", "/healthz-not"):
        assert await union.authenticate(credentials(path=path)) is None
    everywhere = UnionAuthenticator([], AnonymousAuthenticator())
    user = await everywhere.authenticate(credentials(path="/apis"))
    assert user is not None and user.name == ANONYMOUS
