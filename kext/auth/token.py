"""Bearer tokens identified by the cluster: a TokenReview (`authentication.k8s.io/v1`) to
kube-apiserver (cf. plugin/pkg/authenticator/token/webhook), behind a cache (cf.
pkg/authentication/token/cache/cached_token_authenticator.go):

- a token's owner, and the answer that it has none, are kept for the cache TTL;
- a review that failed (`status.error`, an error answer, no answer) is kept for no time, so
  the next request asks again, and the request it was made for fails (401);
- concurrent lookups of one token share one review;
- the cache is keyed by an HMAC of the token under a key made at start-up: no token is held
  longer than its review takes, and none appears in a log line, a metric, a repr or an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from kext.auth.authentication import AuthenticationError, TokenAuthenticator
from kext.auth.cache import ExpiringCache
from kext.auth.user import UserInfo
from kext.kube.client import KubeClient
from kext.kube.errors import KubeError, KubeStatusError
from kext.metrics import Metrics

log = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
REVIEW_TIMEOUT = 10.0  # kube's TokenAccessReviewTimeout
MAX_CACHED_TOKENS = 32 * 1024  # kube's 32 stripes of 1024


class TokenReviewAuthenticator:
    """Asks kube-apiserver who a token belongs to. With audiences, the review asks for them
    and the token must be valid for at least one (the answer's, or when it names none, the
    configured ones)."""

    def __init__(self, client: KubeClient, audiences: Sequence[str] = (),
                 timeout: float = REVIEW_TIMEOUT, metrics: Metrics | None = None) -> None:
        self.client = client
        self.audiences = tuple(audiences)
        self.timeout = timeout
        self.metrics = metrics

    def __repr__(self) -> str:
        return f"TokenReviewAuthenticator({self.client!r}, audiences={list(self.audiences)})"

    async def authenticate_token(self, token: str) -> UserInfo | None:
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        try:
            response = await self.client.request(
                "POST", TOKEN_REVIEWS, body=orjson.dumps(body), timeout=self.timeout,
                idempotent=True)
            review = response.json()
        except KubeStatusError as error:
            self._count(str(error.code))
            raise AuthenticationError(f"TokenReview failed: {error.code} {error.reason}: "
                                      f"{error.message}") from None
        except KubeError as error:
            self._count("<error>")
            raise AuthenticationError(f"TokenReview failed: {error}") from None
        self._count(str(response.code))
        status = review.get("status") if isinstance(review, dict) else None
        if not isinstance(status, dict):
            raise AuthenticationError("TokenReview failed: the answer has no status")
        if self.audiences:
            granted = status.get("audiences") or self.audiences
            if not set(granted) & set(self.audiences):
                return None
        if not status.get("authenticated"):
            if status.get("error"):
                raise AuthenticationError(f"TokenReview: {status['error']}")
            return None
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        return UserInfo(
            str(user.get("username") or ""),
            tuple(str(g) for g in user.get("groups") or ()),
            str(user.get("uid") or ""),
            {str(k): tuple(str(v) for v in values or ()) for k, values in extra.items()},
        )

    def _count(self, code: str) -> None:
        if self.metrics is not None:
            self.metrics.delegated_authn_requests.labels(code).inc()


class CachedTokenAuthenticator:
    """A token authenticator's answers, kept for `ttl` seconds (see the module docstring).
    A ttl of 0 keeps nothing (every lookup asks; concurrent ones still share)."""

    def __init__(self, tokens: TokenAuthenticator, ttl: float, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_CACHED_TOKENS) -> None:
        self.tokens = tokens
        self.ttl = ttl
        self.metrics = metrics
        self._secret = secrets.token_bytes(32)
        self._cache: ExpiringCache[tuple[UserInfo | None]] = ExpiringCache(max_entries, clock)
        self._lookups: dict[str, asyncio.Future[tuple[UserInfo | None]]] = {}

    def __repr__(self) -> str:
        return f"CachedTokenAuthenticator({self.tokens!r}, ttl={self.ttl:g}s)"

    async def authenticate_token(self, token: str) -> UserInfo | None:
        key = self._key(token)
        cached = self._cache.get(key)
        if cached is not None:
            self._count("hit")
            return cached[0]
        self._count("miss")
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.ensure_future(self._review(key, token))
            self._lookups[key] = lookup
            lookup.add_done_callback(lambda done: self._finished(key, done))
        # One caller going away (its client hung up) does not cancel the others' review.
        record = await asyncio.shield(lookup)
        return record[0]

    async def _review(self, key: str, token: str) -> tuple[UserInfo | None]:
        cached = self._cache.get(key)  # raced with a review that just finished
        if cached is not None:
            return cached
        record = (await self.tokens.authenticate_token(token),)
        self._cache.set(key, record, self.ttl)
        return record

    def _finished(self, key: str, done: asyncio.Future[tuple[UserInfo | None]]) -> None:
        if self._lookups.get(key) is done:
            del self._lookups[key]
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have gone away

    def _key(self, token: str) -> str:
        data = len(token).to_bytes(4, "big") + token.encode()
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def _count(self, status: str) -> None:
        if self.metrics is not None:
            self.metrics.token_cache_requests.labels(status).inc()
