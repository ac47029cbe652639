"""Request authentication, first success wins (cf. apiserver pkg/authentication/request):
front-proxy request headers, then x509 client certificates, then anonymous (on every path
when enabled, else on the always-allowed paths only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

from kext.auth.paths import AllowedPaths
from kext.auth.user import ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, UserInfo


@dataclass(frozen=True)
class Credentials:
    """What a request presents (its TLS client chain, DER, leaf first; its headers) and the
    path it asks for."""

    peer_certificates: Sequence[bytes]
    headers: Sequence[tuple[str, str]]  # lowercase names
    path: str


class Authenticator(Protocol):
    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        """The user the credentials identify, or None when this authenticator cannot tell."""
        ...


class VerifiedLeaves:
    """Client certificates already checked against one set of roots, by their DER: a client
    sends the same certificate on every request of every connection, and parsing plus a
    signature check per request cost a quarter of a GET. Bounded: cleared when full."""

    MAX_ENTRIES = 4096

    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        self.roots = roots
        self._leaves: dict[bytes, x509.Certificate | None] = {}

    def leaf(self, chain: Sequence[bytes]) -> x509.Certificate | None:
        """The leaf if it is directly issued by one of the roots (TLS has already checked the
        chain and its validity period against the union of kext's CAs; this tells which CA
        it was)."""
        if not chain or not self.roots:
            return None
        der = chain[0]
        if der in self._leaves:
            return self._leaves[der]
        if len(self._leaves) >= self.MAX_ENTRIES:
            self._leaves.clear()
        leaf = _verify_leaf(der, self.roots)
        self._leaves[der] = leaf
        return leaf


def _verify_leaf(der: bytes, roots: Sequence[x509.Certificate]) -> x509.Certificate | None:
    leaf = x509.load_der_x509_certificate(der)
    for root in roots:
        if leaf.issuer != root.subject:
            continue
        try:
            leaf.verify_directly_issued_by(root)
        except (ValueError, TypeError, Exception):  # signature mismatch or unsupported key
            continue
        return leaf
    return None


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


class X509Authenticator:
    """A client certificate signed by the client CA: CN is the user, O the groups."""

    def __init__(self, roots: list[x509.Certificate]) -> None:
        self.verified = VerifiedLeaves(roots)

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        leaf = self.verified.leaf(credentials.peer_certificates)
        if leaf is None:
            return None
        orgs = tuple(
            str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        )
        return UserInfo(_common_name(leaf), (*orgs, AUTHENTICATED))


class RequestHeaderAuthenticator:
    """The aggregator's front-proxy identity: trusted only when the client certificate verifies
    against the request-header CA and its CN is allowed; then X-Remote-* name the user."""

    def __init__(self, roots: list[x509.Certificate], allowed_names: list[str],
                 username_headers: list[str], group_headers: list[str],
                 extra_prefixes: list[str]) -> None:
        self.verified = VerifiedLeaves(roots)
        self.allowed_names = set(allowed_names)
        self.username_headers = [h.lower() for h in username_headers]
        self.group_headers = [h.lower() for h in group_headers]
        self.extra_prefixes = [p.lower() for p in extra_prefixes]

    def is_identity_header(self, name: str) -> bool:
        """Whether a header carries front-proxy identity (stripped from every request)."""
        return (name in self.username_headers or name in self.group_headers
                or any(name.startswith(p) for p in self.extra_prefixes))

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        leaf = self.verified.leaf(credentials.peer_certificates)
        if leaf is None:
            return None
        if self.allowed_names and _common_name(leaf) not in self.allowed_names:
            return None
        headers = credentials.headers
        name = next(
            (v for h in self.username_headers for k, v in headers if k == h and v), ""
        )
        if not name:
            return None
        groups = tuple(
            g.strip() for h in self.group_headers for k, v in headers if k == h
            for g in v.split(",") if g.strip()
        )
        extra: dict[str, list[str]] = {}
        for key, value in headers:
            for prefix in self.extra_prefixes:
                if key.startswith(prefix):
                    extra_key = unquote(key[len(prefix):]).lower()
                    extra.setdefault(extra_key, []).extend(
                        v.strip() for v in value.split(",") if v.strip()
                    )
        return UserInfo(name, groups, extra={k: tuple(v) for k, v in extra.items()})


class AnonymousAuthenticator:
    """system:anonymous (group system:unauthenticated) for a request nobody else identified:
    on every path, or only on `paths` (kube's anonymous authenticator with path conditions,
    which is how health probes without credentials pass while anonymous access is off)."""

    def __init__(self, paths: AllowedPaths | None = None) -> None:
        self.paths = paths

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        if self.paths is not None and not self.paths.matches(credentials.path):
            return None
        return UserInfo(ANONYMOUS, (UNAUTHENTICATED,))


class UnionAuthenticator:
    """Tries each authenticator in order, first success wins, and adds system:authenticated
    to the user; then the anonymous authenticator, if any."""

    def __init__(self, authenticators: Sequence[Authenticator],
                 anonymous: AnonymousAuthenticator | None = None,
                 request_header: RequestHeaderAuthenticator | None = None) -> None:
        self.authenticators = authenticators
        self.anonymous = anonymous
        self.request_header = request_header

    def strip_identity_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if self.request_header is None:
            return headers
        return [(k, v) for k, v in headers if not self.request_header.is_identity_header(k)]

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        for authenticator in self.authenticators:
            user = await authenticator.authenticate(credentials)
            if user is not None:
                if AUTHENTICATED not in user.groups:
                    user = UserInfo(user.name, (*user.groups, AUTHENTICATED), user.uid,
                                    user.extra)
                return user
        if self.anonymous is not None:
            return await self.anonymous.authenticate(credentials)
        return None
