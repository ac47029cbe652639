"""Authentication in memory: x509 and front-proxy certificates (CA, allowed names, header
parsing as kube's headerrequest does it), bearer tokens, anonymous on the always-allowed paths
only, errors that keep a request from being anonymous, the headers stripped, and the
authentication metrics."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from kext.auth.authentication import (
    AnonymousAuthenticator,
    AuthenticationError,
    BearerTokenAuthenticator,
    Credentials,
    RequestHeaderAuthenticator,
    RequestHeaderNames,
    UnionAuthenticator,
    X509Authenticator,
    unescape_extra_key,
)
from kext.auth.ca import CABundle
from kext.auth.paths import AllowedPaths
from kext.auth.user import ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, UserInfo
from kext.certs import KeyPair, issue_cert, new_ca
from kext.metrics import Metrics

pytestmark = pytest.mark.asyncio

FRONT_PROXY = RequestHeaderNames.of(["front-proxy-client"], ["X-Remote-User"], ["X-Remote-Uid"],
                                    ["X-Remote-Group"], ["X-Remote-Extra-"])


def der(pair: KeyPair) -> bytes:
    return pair.cert.public_bytes(serialization.Encoding.DER)


def credentials(pair: KeyPair | None = None, path: str = "/apis",
                headers: list[tuple[str, str]] | None = None) -> Credentials:
    return Credentials([der(pair)] if pair else [], headers or [], path)


def bundle(*cas: KeyPair) -> CABundle:
    return CABundle("test", [ca.cert for ca in cas])


class Tokens:
    """A token authenticator that knows one token."""

    def __init__(self, token: str, user: UserInfo) -> None:
        self.token, self.user = token, user

    async def authenticate_token(self, token: str) -> UserInfo | None:
        return self.user if token == self.token else None


async def test_a_certificate_is_trusted_only_by_the_authenticator_of_its_ca() -> None:
    ca, other_ca = new_ca("clients"), new_ca("other clients")
    alice = issue_cert(ca, "alice", ["team-a"], client=True)
    mine, theirs = X509Authenticator(bundle(ca)), X509Authenticator(bundle(other_ca))
    for _ in range(2):  # the second time from each authenticator's cache
        user = await mine.authenticate(credentials(alice))
        assert user is not None and (user.name, user.groups) == ("alice", ("team-a",))
        with pytest.raises(AuthenticationError, match="signed by unknown authority"):
            await theirs.authenticate(credentials(alice))
    assert await mine.authenticate(credentials()) is None  # no certificate: not its kind
    assert await X509Authenticator(CABundle("empty")).authenticate(credentials(alice)) is None


async def test_a_replaced_ca_bundle_is_used_at_once() -> None:
    old, new = new_ca("old clients"), new_ca("new clients")
    roots = bundle(old)
    authenticator = X509Authenticator(roots)
    alice, bob = issue_cert(old, "alice", client=True), issue_cert(new, "bob", client=True)
    assert await authenticator.authenticate(credentials(alice)) is not None
    roots.set([new.cert])
    with pytest.raises(AuthenticationError):
        await authenticator.authenticate(credentials(alice))
    user = await authenticator.authenticate(credentials(bob))
    assert user is not None and user.name == "bob"


async def test_an_expired_or_server_only_certificate_is_refused() -> None:
    ca = new_ca("clients")
    server_cert = issue_cert(ca, "kube-apiserver", hosts=["localhost"])  # serverAuth only
    with pytest.raises(AuthenticationError, match="incompatible key usage"):
        await X509Authenticator(bundle(ca)).authenticate(credentials(server_cert))
    now = datetime.datetime.now(datetime.UTC)
    expired = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")]))
               .issuer_name(ca.cert.subject).public_key(ca.key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=2))
               .not_valid_after(now - datetime.timedelta(days=1))
               .sign(ca.key, hashes.SHA256()))
    chain = [expired.public_bytes(serialization.Encoding.DER)]
    with pytest.raises(AuthenticationError, match="expired"):
        await X509Authenticator(bundle(ca)).authenticate(Credentials(chain, [], "/apis"))


async def test_front_proxy_headers_need_the_request_header_ca_and_an_allowed_name() -> None:
    proxy_ca, client_ca = new_ca("front-proxy"), new_ca("clients")
    proxy = issue_cert(proxy_ca, "front-proxy-client", client=True)
    stranger = issue_cert(proxy_ca, "someone-else", client=True)
    impostor = issue_cert(client_ca, "front-proxy-client", client=True)
    headers = [("x-remote-user", "bob"), ("x-remote-group", "devs"), ("x-remote-group", "ops")]
    request_header = RequestHeaderAuthenticator(bundle(proxy_ca), FRONT_PROXY)
    union = UnionAuthenticator([request_header, X509Authenticator(bundle(client_ca))],
                               AnonymousAuthenticator(), request_header)
    bob = await union.authenticate(credentials(proxy, headers=headers))
    assert bob is not None and (bob.name, bob.groups) == ("bob", ("devs", "ops", AUTHENTICATED))
    # signed by the client CA: an x509 user named by its CN, the headers ignored
    other = await union.authenticate(credentials(impostor, headers=headers))
    assert other is not None and other.name == "front-proxy-client"
    # the front-proxy CA but a CN not allowed: an error, so not even anonymous
    with pytest.raises(AuthenticationError, match="cn=someone-else is not in the allowed list"):
        await request_header.authenticate(credentials(stranger, headers=headers))
    assert await union.authenticate(credentials(stranger, headers=headers)) is None
    # no allowed names: any certificate of the front-proxy CA
    request_header.names = RequestHeaderNames.of([], ["X-Remote-User"], [], [], [])
    user = await request_header.authenticate(credentials(stranger, headers=headers))
    assert user is not None and (user.name, user.groups) == ("bob", ())


async def test_front_proxy_headers_are_read_as_kube_reads_them() -> None:
    proxy_ca = new_ca("front-proxy")
    proxy = issue_cert(proxy_ca, "front-proxy-client", client=True)
    authenticator = RequestHeaderAuthenticator(bundle(proxy_ca), FRONT_PROXY)
    headers = [
        ("x-remote-user", "alice@example.com"), ("x-remote-user", "ignored"),
        ("x-remote-uid", "u-1234"),
        ("x-remote-group", "a, b"),  # one header line is one group, commas and all
        ("x-remote-group", ""), ("x-remote-group", "c"),
        ("x-remote-extra-scopes", "read"), ("x-remote-extra-scopes", "write"),
        ("x-remote-extra-example.com%2fteam", "blue"),  # percent-decoded key
        ("x-remote-extra-bad%zzkey", "kept"),  # a malformed escape keeps the key as it is
    ]
    user = await authenticator.authenticate(credentials(proxy, headers=headers))
    assert user == UserInfo("alice@example.com", ("a, b", "c"), "u-1234", {
        "scopes": ("read", "write"), "example.com/team": ("blue",), "bad%zzkey": ("kept",)})
    # no user header: not this authenticator's request
    assert await authenticator.authenticate(credentials(proxy)) is None
    assert unescape_extra_key("a%20b") == "a b" and unescape_extra_key("%ff") == "%ff"


async def test_bearer_tokens_and_what_is_not_one() -> None:
    alice = UserInfo("alice", ("devs",))
    authenticator = BearerTokenAuthenticator(Tokens("s3cret", alice))
    for header in ("Bearer s3cret", "bearer s3cret", "  Bearer s3cret  ", "Bearer s3cret x"):
        assert await authenticator.authenticate(
            credentials(headers=[("authorization", header)])) == alice
    for header in ("", "Basic czNjcmV0", "Bearer", "Bearer "):
        assert await authenticator.authenticate(
            credentials(headers=[("authorization", header)])) is None
    with pytest.raises(AuthenticationError, match="invalid bearer token"):
        await authenticator.authenticate(credentials(headers=[("authorization", "Bearer x")]))


async def test_a_bad_token_is_401_even_where_anonymous_would_pass() -> None:
    union = UnionAuthenticator([BearerTokenAuthenticator(Tokens("good", UserInfo("alice")))],
                               AnonymousAuthenticator(AllowedPaths(["/readyz"])))
    bad = credentials(path="/readyz", headers=[("authorization", "Bearer bad")])
    assert await union.authenticate(bad) is None
    user = await union.authenticate(credentials(path="/readyz"))
    assert user is not None and user.name == ANONYMOUS
    good = credentials(headers=[("authorization", "Bearer good")])
    user = await union.authenticate(good)
    assert user is not None and user.groups == (AUTHENTICATED,)
    assert "good" not in repr(good)  # credentials never show their headers


async def test_anonymous_only_on_the_always_allowed_paths() -> None:
    ca = new_ca("clients")
    paths = AllowedPaths(["/healthz", "/livez", "/readyz", "/debug/*"])
    union = UnionAuthenticator([X509Authenticator(bundle(ca))], AnonymousAuthenticator(paths))
    for path in ("/readyz", "/readyz/etcd", "/livez", "/debug/pprof/heap"):
        user = await union.authenticate(credentials(path=path))
        assert user is not None and (user.name, user.groups) == (ANONYMOUS, (UNAUTHENTICATED,))
    for path in ("/apis", "/metrics", "/readyzz", "/healthz-not"):
        assert await union.authenticate(credentials(path=path)) is None
    everywhere = UnionAuthenticator([], AnonymousAuthenticator())
    user = await everywhere.authenticate(credentials(path="/apis"))
    assert user is not None and user.name == ANONYMOUS


async def test_credentials_are_stripped_whatever_authenticated_the_request() -> None:
    proxy_ca = new_ca("front-proxy")
    custom = RequestHeaderNames.of([], ["X-User"], ["X-Uid"], ["X-Groups"], ["X-Extra-"])
    union = UnionAuthenticator([], None, RequestHeaderAuthenticator(bundle(proxy_ca), custom))
    headers = [("authorization", "Bearer t"), ("x-remote-user", "u"), ("x-remote-uid", "1"),
               ("x-remote-group", "g"), ("x-remote-extra-k", "v"), ("x-user", "u"),
               ("x-uid", "1"), ("x-groups", "g"), ("x-extra-k", "v"), ("accept", "*/*")]
    assert union.strip_identity_headers(headers) == [("accept", "*/*")]


async def test_attempts_are_counted_by_result() -> None:
    metrics = Metrics()
    union = UnionAuthenticator([BearerTokenAuthenticator(Tokens("good", UserInfo("alice")))],
                               None, None, metrics)
    await union.authenticate(credentials(headers=[("authorization", "Bearer good")]))
    await union.authenticate(credentials(headers=[("authorization", "Bearer bad")]))
    await union.authenticate(credentials())
    families = {f.name: f for f in text_string_to_metric_families(
        metrics.exposition().decode())}
    attempts = {s.labels["result"]: s.value for s in families["authentication_attempts"].samples
                if s.name == "authentication_attempts"}
    assert attempts == {"success": 1, "error": 1, "failure": 1}
    durations = {s.labels["result"]: s.value
                 for s in families["authentication_duration_seconds"].samples
                 if s.name == "authentication_duration_seconds_count"}
    assert durations == {"success": 1, "error": 1, "failure": 1}
