"""Request authentication, first success wins (cf. apiserver pkg/authentication/request and
authenticatorfactory/delegating.go): front-proxy request headers, then x509 client
certificates, then bearer tokens (TokenReview, kext/auth/token.py), then anonymous (on every
path when enabled, else on the always-allowed paths only).

An authenticator answers a user, None (these credentials are not of its kind), or raises
AuthenticationError (they are, and do not hold: a certificate no CA of its own signed, a
front-proxy certificate whose CN is not allowed, a bad token, a TokenReview that could not
be made). As in kube, an error does not stop a later authenticator from succeeding, but when
none succeeds it also keeps the request from being anonymous: it is a 401."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kext.auth.ca import CABundle
from kext.auth.paths import AllowedPaths
from kext.auth.user import ANONYMOUS, AUTHENTICATED, UNAUTHENTICATED, UserInfo
from kext.metrics import Metrics

log = logging.getLogger(__name__)

# The front-proxy headers every request loses, whatever is configured (as WithAuthentication
# clears the standard ones besides the configured ones).
STANDARD_IDENTITY_HEADERS = ("x-remote-user", "x-remote-uid", "x-remote-group")
STANDARD_EXTRA_PREFIX = "x-remote-extra-"


@dataclass(frozen=True)
class Credentials:
    """What a request presents (its TLS client chain, DER, leaf first; its headers) and the
    path it asks for. Neither shows in a repr: the headers may carry a bearer token."""

    peer_certificates: Sequence[bytes] = field(repr=False)
    headers: Sequence[tuple[str, str]] = field(repr=False)  # lowercase names
    path: str


class AuthenticationError(Exception):
    """Credentials of an authenticator's kind that do not hold, or could not be checked. The
    message is logged; it never holds a token."""


class Authenticator(Protocol):
    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        """The user the credentials identify, or None when they are not this authenticator's
        kind; AuthenticationError when they are and do not hold."""
        ...


class VerifiedLeaves:
    """Client certificates already checked against a CA bundle, by their DER: a client
    sends the same certificate on every request of every connection, and parsing plus a
    signature check per request cost a quarter of a GET. Forgotten when the bundle changes;
    bounded (cleared when full). The validity period is checked on every use."""

    MAX_ENTRIES = 4096

    def __init__(self, roots: CABundle) -> None:
        self.roots = roots
        self._version = roots.version
        # DER -> (certificate, not before, not after as POSIX times), or why it is refused
        self._leaves: dict[bytes, tuple[x509.Certificate, float, float] | str] = {}

    def leaf(self, chain: Sequence[bytes]) -> x509.Certificate | None:
        """The leaf if it is directly issued by one of the roots and valid now; None when no
        certificate was presented or the bundle holds none (it then verifies nothing);
        AuthenticationError when it does not verify. (TLS has already checked the chain
        against the union of kext's CAs; this tells which CA it was.)"""
        if not chain or not self.roots.loaded:
            return None
        if self._version != self.roots.version:
            self._leaves.clear()
            self._version = self.roots.version
        der = chain[0]
        verified = self._leaves.get(der)
        if verified is None:
            if len(self._leaves) >= self.MAX_ENTRIES:
                self._leaves.clear()
            verified = self._leaves[der] = _verify_leaf(der, self.roots.certificates)
        if isinstance(verified, str):
            raise AuthenticationError(verified)
        leaf, not_before, not_after = verified
        if not not_before <= time.time() <= not_after:
            raise AuthenticationError(f"verifying certificate {_describe(leaf)} failed: "
                                      "x509: certificate has expired or is not yet valid")
        return leaf


def _verify_leaf(der: bytes, roots: Sequence[x509.Certificate],
                 ) -> tuple[x509.Certificate, float, float] | str:
    """The certificate, or why it does not verify against roots for client authentication."""
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError as error:
        return f"x509: the client certificate does not parse: {error}"
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        pass
    else:
        if (ExtendedKeyUsageOID.CLIENT_AUTH not in usages
                and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages):
            return (f"verifying certificate {_describe(leaf)} failed: x509: certificate "
                    "specifies an incompatible key usage")
    for root in roots:
        if leaf.issuer != root.subject:
            continue
        try:
            leaf.verify_directly_issued_by(root)
        except (ValueError, TypeError, Exception):  # signature mismatch or unsupported key
            continue
        return (leaf, leaf.not_valid_before_utc.timestamp(),
                leaf.not_valid_after_utc.timestamp())
    return (f"verifying certificate {_describe(leaf)} failed: x509: certificate signed by "
            "unknown authority")


def _describe(cert: x509.Certificate) -> str:
    return f"CN={_common_name(cert)}, SN={cert.serial_number}"


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


class X509Authenticator:
    """A client certificate signed by the client CA: CN is the user, O the groups (cf.
    x509.CommonNameUserConversion)."""

    def __init__(self, roots: CABundle) -> None:
        self.verified = VerifiedLeaves(roots)

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        leaf = self.verified.leaf(credentials.peer_certificates)
        if leaf is None or not _common_name(leaf):
            return None
        orgs = tuple(
            str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        )
        return UserInfo(_common_name(leaf), orgs)


@dataclass(frozen=True)
class RequestHeaderNames:
    """Which front-proxy certificates may name the user (allowed CNs; none: any the
    request-header CA signed) and in which headers (lowercase; cf. RequestHeaderConfig)."""

    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("x-remote-user",)
    uid_headers: tuple[str, ...] = ("x-remote-uid",)
    group_headers: tuple[str, ...] = ("x-remote-group",)
    extra_prefixes: tuple[str, ...] = ("x-remote-extra-",)

    @classmethod
    def of(cls, allowed_names: Sequence[str], username_headers: Sequence[str],
           uid_headers: Sequence[str], group_headers: Sequence[str],
           extra_prefixes: Sequence[str]) -> RequestHeaderNames:
        """From configured names (header names in any case, surrounding spaces dropped)."""
        def lower(names: Sequence[str]) -> tuple[str, ...]:
            return tuple(n.strip().lower() for n in names if n.strip())

        return cls(tuple(allowed_names), lower(username_headers), lower(uid_headers),
                   lower(group_headers), lower(extra_prefixes))


NO_REQUEST_HEADERS = RequestHeaderNames((), (), (), (), ())


class RequestHeaderAuthenticator:
    """The aggregator's front-proxy identity: trusted only when the client certificate verifies
    against the request-header CA and its CN is allowed; then X-Remote-* name the user (cf.
    headerrequest with x509request's CA verifier). Both the CA and `names` may be replaced
    while kext runs (from the cluster's extension-apiserver-authentication ConfigMap)."""

    def __init__(self, roots: CABundle, names: RequestHeaderNames) -> None:
        self.ca = roots
        self.verified = VerifiedLeaves(roots)
        self.names = names

    def is_identity_header(self, name: str) -> bool:
        """Whether a header carries front-proxy identity (stripped from every request)."""
        names = self.names
        return (name in names.username_headers or name in names.uid_headers
                or name in names.group_headers
                or any(name.startswith(p) for p in names.extra_prefixes))

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        leaf = self.verified.leaf(credentials.peer_certificates)
        if leaf is None:
            return None
        names = self.names
        if names.allowed_names and _common_name(leaf) not in names.allowed_names:
            raise AuthenticationError(
                f"x509: subject with cn={_common_name(leaf)} is not in the allowed list")
        headers = credentials.headers
        name = _first_value(headers, names.username_headers)
        if not name:
            return None
        # Each header line is one value, as kube reads them: no splitting at commas.
        groups = tuple(v for h in names.group_headers for k, v in headers if k == h and v)
        extra: dict[str, list[str]] = {}
        for prefix in names.extra_prefixes:
            for key, value in headers:
                if key.startswith(prefix):
                    extra.setdefault(unescape_extra_key(key[len(prefix):]), []).append(value)
        return UserInfo(name, groups, _first_value(headers, names.uid_headers),
                        {k: tuple(v) for k, v in extra.items()})


def _first_value(headers: Sequence[tuple[str, str]], names: Sequence[str]) -> str:
    """The first value of the first of names that has a non-empty one (Go's Header.Get)."""
    for wanted in names:
        value = next((v for k, v in headers if k == wanted), "")
        if value:
            return value
    return ""


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def unescape_extra_key(key: str) -> str:
    """An extra key as kube decodes it from a header name (already lower case):
    percent-decoded, or kept as it is when an escape is malformed (url.PathUnescape)."""
    if "%" not in key or _BAD_ESCAPE.search(key):
        return key
    try:
        return unquote(key, errors="strict")
    except UnicodeDecodeError:
        return key


class TokenAuthenticator(Protocol):
    async def authenticate_token(self, token: str) -> UserInfo | None:
        """Who the token belongs to, None when nobody; AuthenticationError when that could
        not be found out."""
        ...


class BearerTokenAuthenticator:
    """`Authorization: Bearer <token>`, identified by a token authenticator (cf.
    bearertoken.Authenticator): a token nobody owns is an error, not "no credentials"."""

    def __init__(self, tokens: TokenAuthenticator) -> None:
        self.tokens = tokens

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        header = next((v for k, v in credentials.headers if k == "authorization"), "").strip()
        parts = header.split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return None
        user = await self.tokens.authenticate_token(parts[1])
        if user is None:
            raise AuthenticationError("invalid bearer token")
        return user


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
    to the user; then, if none failed with an error, the anonymous authenticator (cf.
    unionauth with the AuthenticatedGroupAdder, and NewFailOnError before anonymous).
    Counts authentication_attempts and their duration by result when given metrics."""

    def __init__(self, authenticators: Sequence[Authenticator],
                 anonymous: AnonymousAuthenticator | None = None,
                 request_header: RequestHeaderAuthenticator | None = None,
                 metrics: Metrics | None = None) -> None:
        self.authenticators = authenticators
        self.anonymous = anonymous
        self.request_header = request_header
        self.metrics = metrics
        self._durations: dict[str, Any] = {}  # the histogram's child per result

    def strip_identity_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """headers without the credentials authentication has used up: Authorization and
        every front-proxy identity header, standard or configured (cf. WithAuthentication)."""
        return [(k, v) for k, v in headers if not self._is_credential(k)]

    def _is_credential(self, name: str) -> bool:
        if (name == "authorization" or name in STANDARD_IDENTITY_HEADERS
                or name.startswith(STANDARD_EXTRA_PREFIX)):
            return True
        return self.request_header is not None and self.request_header.is_identity_header(name)

    async def authenticate(self, credentials: Credentials) -> UserInfo | None:
        started = time.monotonic()
        failures: list[str] = []
        user = None
        for authenticator in self.authenticators:
            try:
                user = await authenticator.authenticate(credentials)
            except AuthenticationError as error:
                failures.append(str(error))
                continue
            if user is not None:
                if AUTHENTICATED not in user.groups and UNAUTHENTICATED not in user.groups:
                    user = UserInfo(user.name, (*user.groups, AUTHENTICATED), user.uid,
                                    user.extra)
                break
        if user is None and failures:
            log.warning("unable to authenticate the request to %s: %s", credentials.path,
                        "; ".join(dict.fromkeys(failures)))
        elif user is None and self.anonymous is not None:
            user = await self.anonymous.authenticate(credentials)
        if self.metrics is not None:
            result = "success" if user is not None else "error" if failures else "failure"
            self.metrics.authentication_attempts.inc(result)
            duration = self._durations.get(result)
            if duration is None:
                duration = self._durations[result] = \
                    self.metrics.authentication_duration.labels(result)
            duration.observe(time.monotonic() - started)
        return user
