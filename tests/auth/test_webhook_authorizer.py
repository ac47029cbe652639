"""SubjectAccessReviews against the kube-apiserver stand-in: the v1 spec for resource and
non-resource requests, answers cached by user and attributes for their own TTLs, failures
never cached and never an allow (including a review that times out), and the metrics."""

from __future__ import annotations

import time
from typing import Any

import pytest

from kext.auth.authorization.authorizer import Attributes, Decision
from kext.auth.authorization.metered import MeteredAuthorizer
from kext.auth.authorization.webhook import (
    SUBJECT_ACCESS_REVIEWS,
    SubjectAccessReviewAuthorizer,
    SubjectAccessReviewError,
)
from kext.auth.user import UserInfo
from kext.kube import KubeClient
from kext.metrics import Metrics
from tests.kube_apiserver import KubeAPIServer

pytestmark = pytest.mark.asyncio

ALICE = UserInfo("alice", ("devs", "system:authenticated"), "u-1", {"scopes": ("read",)})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def widgets(verb: str, name: str = "", user: UserInfo = ALICE) -> Attributes:
    return Attributes(user=user, verb=verb, is_resource_request=True,
                      path="/apis/example.kext.io/v1alpha1/namespaces/default/widgets",
                      namespace="default", api_group="example.kext.io",
                      api_version="v1alpha1", resource="widgets", name=name)


def reviews(server: KubeAPIServer) -> list[Any]:
    return [r.body for r in server.requests_to(SUBJECT_ACCESS_REVIEWS, "POST")]


async def test_the_review_names_the_user_and_the_attributes(kube_apiserver: KubeAPIServer,
                                                            client: KubeClient) -> None:
    kube_apiserver.sar.allow(user="alice", verb="get", resource="widgets")
    authorizer = SubjectAccessReviewAuthorizer(client, 10, 10)
    assert await authorizer.authorize(widgets("get", "w1")) == (Decision.ALLOW, "")
    status = Attributes(user=ALICE, verb="update", is_resource_request=True, path="",
                        api_group="example.kext.io", api_version="v1alpha1",
                        resource="widgets", subresource="status", name="w1")
    assert await authorizer.authorize(status) == (Decision.NO_OPINION, "")
    health = Attributes(user=ALICE, verb="get", is_resource_request=False, path="/metrics")
    assert await authorizer.authorize(health) == (Decision.NO_OPINION, "")
    first, second, third = reviews(kube_apiserver)
    assert first == {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                     "spec": {
                         "resourceAttributes": {
                             "namespace": "default", "verb": "get", "group": "example.kext.io",
                             "version": "v1alpha1", "resource": "widgets", "name": "w1"},
                         "user": "alice", "groups": ["devs", "system:authenticated"],
                         "extra": {"scopes": ["read"]}, "uid": "u-1"}}
    assert second["spec"]["resourceAttributes"] == {
        "verb": "update", "group": "example.kext.io", "version": "v1alpha1",
        "resource": "widgets", "subresource": "status", "name": "w1"}
    assert third["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}


async def test_allow_and_deny_are_cached_for_their_own_ttls(kube_apiserver: KubeAPIServer,
                                                            client: KubeClient) -> None:
    kube_apiserver.sar.allow(user="alice", verb="get")
    kube_apiserver.sar.deny(user="alice", verb="delete", reason="no deleting")
    clock, metrics = Clock(), Metrics()
    authorizer = SubjectAccessReviewAuthorizer(client, 30, 5, metrics=metrics, clock=clock)
    for _ in range(3):
        assert (await authorizer.authorize(widgets("get", "w1")))[0] is Decision.ALLOW
        # the reason is for kext's log, not for the caller
        assert await authorizer.authorize(widgets("delete", "w1")) == (Decision.DENY, "")
    assert len(reviews(kube_apiserver)) == 2
    # each user, and each set of attributes, has its own answer
    bob = UserInfo("bob", ("devs", "system:authenticated"))
    assert (await authorizer.authorize(widgets("get", "w1", bob)))[0] is Decision.NO_OPINION
    assert (await authorizer.authorize(widgets("get", "w2")))[0] is Decision.ALLOW
    assert len(reviews(kube_apiserver)) == 4
    kube_apiserver.sar.clear()
    kube_apiserver.sar.allow(user="alice")
    clock.now += 5  # the denial has expired, the allow has not
    assert (await authorizer.authorize(widgets("delete", "w1")))[0] is Decision.ALLOW
    assert (await authorizer.authorize(widgets("get", "w1")))[0] is Decision.ALLOW
    assert len(reviews(kube_apiserver)) == 5
    counts = {s.labels["status"]: s.value for f in metrics.registry.collect()
              if f.name == "kext_authorization_cache_request" for s in f.samples
              if s.name.endswith("_total")}
    assert counts == {"hit": 5.0, "miss": 5.0}


async def test_a_review_that_cannot_be_made_is_no_decision_and_not_cached(
        kube_apiserver: KubeAPIServer, client: KubeClient) -> None:
    kube_apiserver.sar.allow(user="alice")
    authorizer = SubjectAccessReviewAuthorizer(client, 30, 30)
    kube_apiserver.fail(SUBJECT_ACCESS_REVIEWS, 500, times=2)
    with pytest.raises(SubjectAccessReviewError, match="SubjectAccessReview failed: 500"):
        await authorizer.authorize(widgets("get"))
    assert (await authorizer.authorize(widgets("get")))[0] is Decision.ALLOW
    # kext's own RBAC missing in the cluster is no decision either
    kube_apiserver.fail(SUBJECT_ACCESS_REVIEWS, 403, times=1)
    with pytest.raises(SubjectAccessReviewError, match="403"):
        await authorizer.authorize(widgets("list"))


async def test_a_review_times_out_and_fails(kube_apiserver: KubeAPIServer,
                                            client: KubeClient) -> None:
    kube_apiserver.sar.allow(user="alice")
    metrics = Metrics()
    authorizer = MeteredAuthorizer(
        SubjectAccessReviewAuthorizer(client, 30, 30, timeout=0.5, metrics=metrics), metrics)
    kube_apiserver.hang(SUBJECT_ACCESS_REVIEWS)
    started = time.monotonic()
    with pytest.raises(SubjectAccessReviewError, match=r"within 0.5s"):
        await authorizer.authorize(widgets("get"))
    assert 0.5 <= time.monotonic() - started < 3
    kube_apiserver.release()
    assert (await authorizer.authorize(widgets("get")))[0] is Decision.ALLOW
    attempts = {s.labels["result"]: s.value for f in metrics.registry.collect()
                if f.name == "authorization_attempts" for s in f.samples
                if s.name.endswith("_total") and s.value}
    assert attempts == {"error": 1.0, "allowed": 1.0}


async def test_an_answer_both_allowed_and_denied_is_no_decision(
        kube_apiserver: KubeAPIServer, client: KubeClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kube_apiserver.sar, "decide", lambda a: (True, True, "confused"))
    authorizer = SubjectAccessReviewAuthorizer(client, 30, 30)
    with pytest.raises(SubjectAccessReviewError, match="both allow and deny"):
        await authorizer.authorize(widgets("get"))
