"""TokenReview against the kube-apiserver stand-in, behind the cache: the v1 wire format,
owners and refusals cached for the TTL, errors never, one review for concurrent lookups of a
token, audiences, and no token in a repr, a log line or a metric."""

from __future__ import annotations

import asyncio
import logging

import pytest

from kext.auth.authentication import AuthenticationError
from kext.auth.token import TOKEN_REVIEWS, CachedTokenAuthenticator, TokenReviewAuthenticator
from kext.auth.user import UserInfo
from kext.kube import KubeClient
from kext.metrics import Metrics
from tests.kube_apiserver import KubeAPIServer

pytestmark = pytest.mark.asyncio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reviews(server: KubeAPIServer) -> int:
    return len(server.requests_to(TOKEN_REVIEWS, "POST"))


async def test_a_review_in_v1_wire_format(kube_apiserver: KubeAPIServer,
                                          client: KubeClient) -> None:
    token = kube_apiserver.add_token("alice", ["devs"], uid="u-1",
                                     extra={"scopes": ["read", "write"]})
    user = await TokenReviewAuthenticator(client).authenticate_token(token)
    assert user == UserInfo("alice", ("devs", "system:authenticated"), "u-1",
                            {"scopes": ("read", "write")})
    (asked,) = kube_apiserver.requests_to(TOKEN_REVIEWS)
    assert asked.body == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                          "spec": {"token": token}}
    assert await TokenReviewAuthenticator(client).authenticate_token("nobody's") is None


async def test_answers_are_cached_for_the_ttl_and_errors_never(
        kube_apiserver: KubeAPIServer, client: KubeClient) -> None:
    token = kube_apiserver.add_token("alice")
    clock, metrics = Clock(), Metrics()
    cached = CachedTokenAuthenticator(TokenReviewAuthenticator(client), 10, metrics, clock)
    for _ in range(3):
        user = await cached.authenticate_token(token)
        assert user is not None and user.name == "alice"
        assert await cached.authenticate_token("unknown") is None
    assert reviews(kube_apiserver) == 2  # one for the owner, one for the refusal
    clock.now += 10
    await cached.authenticate_token(token)
    await cached.authenticate_token("unknown")
    assert reviews(kube_apiserver) == 4
    # a review with status.error is not kept: the next lookup asks again
    kube_apiserver.token_review_error = "the token signing key is being rotated"
    clock.now += 10
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="signing key is being rotated"):
            await cached.authenticate_token(token)
    assert reviews(kube_apiserver) == 6
    kube_apiserver.token_review_error = ""
    # no answer is not kept either
    kube_apiserver.fail(TOKEN_REVIEWS, 500, times=2)
    with pytest.raises(AuthenticationError, match="TokenReview failed: 500"):
        await cached.authenticate_token(token)
    assert await cached.authenticate_token(token) is not None
    counts = {s.labels["status"]: s.value for f in metrics.registry.collect()
              if f.name == "authentication_token_cache_request" for s in f.samples
              if s.name.endswith("_total")}
    assert counts["hit"] == 4


async def test_concurrent_lookups_of_a_token_share_one_review(
        kube_apiserver: KubeAPIServer, client: KubeClient) -> None:
    token = kube_apiserver.add_token("alice")
    cached = CachedTokenAuthenticator(TokenReviewAuthenticator(client), 10)
    kube_apiserver.hang(TOKEN_REVIEWS)
    lookups = [asyncio.ensure_future(cached.authenticate_token(token)) for _ in range(20)]
    lookups[0].cancel()  # one caller going away does not end the review for the others
    for _ in range(200):
        if reviews(kube_apiserver):
            break
        await asyncio.sleep(0.01)
    kube_apiserver.release()
    users = await asyncio.gather(*lookups[1:])
    assert {u.name for u in users if u is not None} == {"alice"} and len(users) == 19
    assert reviews(kube_apiserver) == 1


async def test_audiences_are_asked_for_and_checked(kube_apiserver: KubeAPIServer,
                                                   client: KubeClient) -> None:
    for_kext = kube_apiserver.add_token("alice", audiences=["kext"])
    for_other = kube_apiserver.add_token("bob", audiences=["vault"])
    authenticator = TokenReviewAuthenticator(client, audiences=["kext"])
    user = await authenticator.authenticate_token(for_kext)
    assert user is not None and user.name == "alice"
    assert kube_apiserver.requests_to(TOKEN_REVIEWS)[0].body["spec"]["audiences"] == ["kext"]
    with pytest.raises(AuthenticationError, match="audiences are invalid"):
        await authenticator.authenticate_token(for_other)


async def test_no_token_in_a_repr_a_log_line_or_a_metric(
        kube_apiserver: KubeAPIServer, client: KubeClient,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = kube_apiserver.add_token("alice")
    metrics = Metrics()
    cached = CachedTokenAuthenticator(TokenReviewAuthenticator(client, metrics=metrics), 10,
                                      metrics)
    await cached.authenticate_token(token)
    kube_apiserver.fail(TOKEN_REVIEWS, 503)
    with pytest.raises(AuthenticationError) as failed:
        await cached.authenticate_token(token + "x")
    texts = [repr(cached), str(failed.value), caplog.text, metrics.exposition().decode()]
    assert not any(token in text for text in texts)
    assert 'apiserver_delegated_authn_request_total{code="201"} 1.0' in texts[3]
