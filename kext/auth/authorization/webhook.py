"""Delegated authorization: a SubjectAccessReview (`authorization.k8s.io/v1`) to
kube-apiserver for what a request asks (cf. plugin/pkg/authorizer/webhook and
authorizerfactory/delegating.go).

- The review names the user (name, uid, groups, extra) and the request's resource attributes
  (verb, group, version, resource, subresource, namespace, name, and the field and label
  selector requirements, as kube 1.31+ sends them) or, for a non-resource request, its path
  and verb.
- Answers are cached by the review's whole spec (so by user, groups, extra and attributes):
  allowed ones for `allowed_ttl`, denied and no-opinion ones for `denied_ttl`. A review that
  could not be made (kube-apiserver down, an error answer, no answer within the timeout) is
  never cached: it raises, and the request fails closed (500), never allowed.
- The answer's `reason` is logged, not passed on: it names the cluster's RBAC objects, which
  are not the caller's business (kext answers the 403 without it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from kext.auth.authorization.authorizer import Attributes, Decision
from kext.auth.cache import ExpiringCache
from kext.kube.client import KubeClient
from kext.kube.errors import KubeError, KubeStatusError
from kext.metrics import Metrics

log = logging.getLogger(__name__)

SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
REVIEW_TIMEOUT = 10.0  # kube's delegated authorization ClientTimeout
MAX_CACHED_REVIEWS = 8192  # kube's webhook authorizer's LRU size
# Requests naming more than this many bytes of namespace, name, path... are not cached (cf.
# shouldCache), so nobody fills the cache with huge keys.
MAX_CACHED_ATTRIBUTE_BYTES = 10000


class SubjectAccessReviewError(Exception):
    """No decision: the review could not be made, or its answer makes no sense."""


def review_spec(attributes: Attributes) -> dict[str, Any]:
    """The SubjectAccessReview spec for attributes, empty fields left out as Go's omitempty
    does."""
    user = attributes.user
    spec: dict[str, Any] = {}
    if attributes.is_resource_request:
        resource = {
            "namespace": attributes.namespace, "verb": attributes.verb,
            "group": attributes.api_group, "version": attributes.api_version,
            "resource": attributes.resource, "subresource": attributes.subresource,
            "name": attributes.name,
        }
        spec["resourceAttributes"] = {k: v for k, v in resource.items() if v}
        for key, requirements in (("fieldSelector", attributes.field_selector),
                                  ("labelSelector", attributes.label_selector)):
            if requirements:
                spec["resourceAttributes"][key] = {"requirements": [
                    {"key": r.key, "operator": r.operator, **({"values": list(r.values)}
                                                              if r.values else {})}
                    for r in requirements]}
    else:
        spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
    if user.name:
        spec["user"] = user.name
    if user.groups:
        spec["groups"] = list(user.groups)
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    if user.uid:
        spec["uid"] = user.uid
    return spec


class SubjectAccessReviewAuthorizer:
    """Asks kube-apiserver, through the cache (see the module docstring)."""

    def __init__(self, client: KubeClient, allowed_ttl: float, denied_ttl: float, *,
                 timeout: float = REVIEW_TIMEOUT, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_CACHED_REVIEWS) -> None:
        self.client = client
        self.allowed_ttl = allowed_ttl
        self.denied_ttl = denied_ttl
        self.timeout = timeout
        self.metrics = metrics
        self._cache: ExpiringCache[dict[str, Any]] = ExpiringCache(max_entries, clock)

    def __repr__(self) -> str:
        return f"SubjectAccessReviewAuthorizer({self.client!r})"

    async def authorize(self, attributes: Attributes) -> tuple[Decision, str]:
        spec = review_spec(attributes)
        key = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS).decode()
        status = self._cache.get(key)
        if status is not None:
            self._count_cache("hit")
        else:
            self._count_cache("miss")
            status = await self._review(spec)
            if _cacheable(attributes):
                ttl = self.allowed_ttl if status.get("allowed") else self.denied_ttl
                self._cache.set(key, status, ttl)
            if not status.get("allowed") and status.get("reason"):
                log.info("SubjectAccessReview: %s may not %s: %s", attributes.user.name,
                         _describe(attributes), status["reason"])
        allowed, denied = bool(status.get("allowed")), bool(status.get("denied"))
        if allowed and denied:
            raise SubjectAccessReviewError(
                "webhook subject access review returned both allow and deny response")
        if denied:
            return Decision.DENY, ""
        if allowed:
            return Decision.ALLOW, ""
        return Decision.NO_OPINION, ""

    async def _review(self, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": spec}
        try:
            response = await self.client.request(
                "POST", SUBJECT_ACCESS_REVIEWS, body=orjson.dumps(body), timeout=self.timeout,
                idempotent=True)
            review = response.json()
        except KubeStatusError as error:
            self._count_request(str(error.code))
            raise SubjectAccessReviewError(
                f"SubjectAccessReview failed: {error.code} {error.reason}: {error.message}"
            ) from None
        except KubeError as error:
            self._count_request("<error>")
            raise SubjectAccessReviewError(f"SubjectAccessReview failed: {error}") from None
        self._count_request(str(response.code))
        status = review.get("status") if isinstance(review, dict) else None
        if not isinstance(status, dict):
            raise SubjectAccessReviewError("SubjectAccessReview failed: the answer has no status")
        return status

    def _count_cache(self, status: str) -> None:
        if self.metrics is not None:
            self.metrics.authorization_cache_requests.labels(status).inc()

    def _count_request(self, code: str) -> None:
        if self.metrics is not None:
            self.metrics.delegated_authz_requests.labels(code).inc()


def _cacheable(attributes: Attributes) -> bool:
    size = sum(len(v) for v in (attributes.namespace, attributes.verb, attributes.api_group,
                                attributes.api_version, attributes.resource,
                                attributes.subresource, attributes.name, attributes.path))
    size += sum(len(r.key) + sum(len(v) for v in r.values)
                for r in (*attributes.field_selector, *attributes.label_selector))
    return size < MAX_CACHED_ATTRIBUTE_BYTES


def _describe(attributes: Attributes) -> str:
    if not attributes.is_resource_request:
        return f"{attributes.verb} {attributes.path}"
    resource = attributes.resource + (f"/{attributes.subresource}"
                                      if attributes.subresource else "")
    group = f".{attributes.api_group}" if attributes.api_group else ""
    where = f" in namespace {attributes.namespace}" if attributes.namespace else ""
    name = f" {attributes.name}" if attributes.name else ""
    return f"{attributes.verb} {resource}{group}{name}{where}"
