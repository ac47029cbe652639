"""The request filter chain, outermost first: Status errors → authentication → in-flight
limit → authorization → timeout → handler (cf. apiserver pkg/server/filters and
pkg/endpoints/filters). Each filter wraps a Handler and returns a Handler."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator

from kext import metrics
from kext.api import errors
from kext.auth.authentication import Credentials, UnionAuthenticator
from kext.auth.user import ANONYMOUS, UNAUTHENTICATED, UserInfo
from kext.server.request import (
    AnyResponse,
    APIRequest,
    Handler,
    StreamResponse,
    status_response,
)

log = logging.getLogger(__name__)

LONG_RUNNING_VERBS = ("watch",)
MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
HEALTH_PATHS = ("/healthz", "/livez", "/readyz")


def is_long_running(request: APIRequest) -> bool:
    return request.info.verb in LONG_RUNNING_VERBS


def with_status_errors(handler: Handler) -> Handler:
    """Every StatusError becomes a Status response; anything else a logged 500."""

    async def serve(request: APIRequest) -> AnyResponse:
        try:
            return await handler(request)
        except errors.StatusError as exc:
            return status_response(exc)
        except Exception:
            log.exception("internal error serving %s %s", request.method, request.path)
            return status_response(errors.internal_error("an unexpected error occurred"))

    return serve


def with_authentication(handler: Handler, authenticator: UnionAuthenticator,
                        always_allow_paths: list[str]) -> Handler:
    """Identify the caller and strip front-proxy identity headers; 401 when nobody is
    identified, except on the always-allowed paths (health probes carry no credentials)."""

    async def serve(request: APIRequest) -> AnyResponse:
        credentials = Credentials(request.peer_certificates, request.raw_headers)
        user = authenticator.authenticate(credentials)
        stripped = authenticator.strip_identity_headers(request.raw_headers)
        if len(stripped) != len(request.raw_headers):
            request.raw_headers = stripped
            headers: dict[str, str] = {}
            for key, value in stripped:
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            request.headers = headers
        if user is None:
            if not path_allowed(request.path, always_allow_paths):
                raise errors.unauthorized()
            user = UserInfo(ANONYMOUS, (UNAUTHENTICATED,))
        request.user = user
        return await handler(request)

    return serve


def path_allowed(path: str, allowed: list[str]) -> bool:
    """Whether path is one of allowed, or below one ending in '*' or a health endpoint."""
    for entry in allowed:
        if entry.endswith("*"):
            if path.startswith(entry[:-1]):
                return True
        elif path == entry or (entry in HEALTH_PATHS and path.startswith(entry + "/")):
            return True
    return False


class InFlight:
    """Requests being served now (watches excluded), by kind; shutdown waits for zero."""

    def __init__(self, max_readonly: int, max_mutating: int) -> None:
        self.limits = {"readonly": max_readonly, "mutating": max_mutating}
        self.counts = {"readonly": 0, "mutating": 0}
        self._idle = asyncio.Event()
        self._idle.set()
        # apiserver_current_inflight_requests is read from these counts when scraped
        for kind, label in (("readonly", "readOnly"), ("mutating", "mutating")):
            metrics.current_inflight.labels(label).set_function(
                functools.partial(self.counts.__getitem__, kind)
            )

    def enter(self, kind: str) -> None:
        self.counts[kind] += 1
        self._idle.clear()

    def leave(self, kind: str) -> None:
        self.counts[kind] -= 1
        if not any(self.counts.values()):
            self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait (bounded) until no request is in flight; False if some still were."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


def with_max_inflight(handler: Handler, inflight: InFlight) -> Handler:
    """Reject with 429 and Retry-After past the in-flight limits; watches are not counted."""

    async def serve(request: APIRequest) -> AnyResponse:
        if is_long_running(request):
            return await handler(request)
        kind = "mutating" if request.method in MUTATING_METHODS else "readonly"
        limit = inflight.limits[kind]
        if limit > 0 and inflight.counts[kind] >= limit:
            raise errors.too_many_requests(
                "Too many requests, please try again later.", retry_after_seconds=1
            )
        inflight.enter(kind)
        try:
            return await handler(request)
        finally:
            inflight.leave(kind)

    return serve


def with_timeout(handler: Handler, seconds: float) -> Handler:
    """Answer 504 when a (non-watch) request runs past the request timeout."""

    async def serve(request: APIRequest) -> AnyResponse:
        if is_long_running(request) or seconds <= 0:
            return await handler(request)
        try:
            return await asyncio.wait_for(handler(request), seconds)
        except TimeoutError:
            raise errors.timeout(
                "request did not complete within the allotted timeout", retry_after_seconds=1
            ) from None

    return serve


def _reported_verb(request: APIRequest) -> str:
    """kube-apiserver's `verb` label: the method, but LIST, WATCH and APPLY where they apply."""
    verb = request.info.verb
    if verb == "list":
        return "LIST"
    if verb == "watch":
        return "WATCH"
    if request.method == "PATCH" and request.header("content-type").startswith(
        "application/apply-patch+yaml"
    ):
        return "APPLY"
    return request.method


def with_metrics(handler: Handler) -> Handler:
    """apiserver_request_total / _duration_seconds and the long-running gauge, labelled as
    kube-apiserver labels them (the in-flight gauge reads InFlight)."""

    async def serve(request: APIRequest) -> AnyResponse:
        info = request.info
        if not info.is_resource_request:
            return await handler(request)
        started = time.monotonic()
        scope = "resource" if info.name else "namespace" if info.namespace else "cluster"
        labels = (_reported_verb(request), "All" if request.param("dryRun") else "",
                  info.api_group, info.api_version, info.resource, info.subresource, scope,
                  "apiserver")
        response = await handler(request)
        metrics.requests_total.labels(*labels, str(response.code)).inc()
        metrics.request_duration.labels(*labels).observe(time.monotonic() - started)
        if isinstance(response, StreamResponse):
            gauge = metrics.longrunning.labels(labels[0], *labels[2:])
            response.chunks = _counted(response.chunks, gauge)
        return response

    return serve


async def _counted(chunks: AsyncIterator[bytes], gauge: metrics.Gauge) -> AsyncIterator[bytes]:
    """Hold the long-running gauge up for as long as the stream runs."""
    gauge.inc()
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        gauge.dec()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def chain(handler: Handler, authenticator: UnionAuthenticator, always_allow_paths: list[str],
          inflight: InFlight, timeout_seconds: float) -> Handler:
    """The full chain around the router, in kube-apiserver's order."""
    inner = with_timeout(handler, timeout_seconds)
    inner = with_max_inflight(inner, inflight)
    inner = with_authentication(inner, authenticator, always_allow_paths)
    return with_metrics(with_status_errors(inner))


__all__ = ["chain", "status_response"]
