"""The request filter chain, outermost first: metrics → Status errors → authentication →
(audit) → (impersonation) → in-flight limit → authorization → timeout → handler (cf.
apiserver pkg/server/filters and pkg/endpoints/filters). Each filter wraps a Handler and
returns a Handler."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator

from kext.api import errors
from kext.auth import impersonation
from kext.auth.authentication import Credentials, UnionAuthenticator
from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision
from kext.metrics import Gauge, Metrics
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


def with_authentication(handler: Handler, authenticator: UnionAuthenticator) -> Handler:
    """Identify the caller and strip front-proxy identity headers; 401 when nobody is
    identified (cf. WithAuthentication)."""

    async def serve(request: APIRequest) -> AnyResponse:
        credentials = Credentials(request.peer_certificates, request.raw_headers, request.path)
        user = await authenticator.authenticate(credentials)
        stripped = authenticator.strip_identity_headers(request.raw_headers)
        if len(stripped) != len(request.raw_headers):
            request.raw_headers = stripped
            headers: dict[str, str] = {}
            for key, value in stripped:
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            request.headers = headers
        if user is None:
            raise errors.unauthorized()
        request.user = user
        return await handler(request)

    return serve


def authorizer_attributes(request: APIRequest) -> Attributes:
    """What the request asks to do, for the authorizer (cf. GetAuthorizerAttributes)."""
    info = request.info
    assert request.user is not None, "authorization runs after authentication"
    return Attributes(
        user=request.user, verb=info.verb, is_resource_request=info.is_resource_request,
        path=request.path, namespace=info.namespace, api_group=info.api_group,
        api_version=info.api_version, resource=info.resource, subresource=info.subresource,
        name=info.name,
    )


def forbidden(attributes: Attributes, reason: str) -> errors.StatusError:
    """The 403 Status kube-apiserver answers a denied request with (cf. responsewriters
    Forbidden and apierrors.NewForbidden)."""
    q = errors.go_quote
    user = q(attributes.user.name)
    if not attributes.is_resource_request:
        message = f"User {user} cannot {attributes.verb} path {q(attributes.path)}"
    else:
        resource = attributes.resource
        if attributes.subresource:
            resource = f"{resource}/{attributes.subresource}"
        where = (f"in the namespace {q(attributes.namespace)}" if attributes.namespace
                 else "at the cluster scope")
        message = (f"User {user} cannot {attributes.verb} resource {q(resource)} "
                   f"in API group {q(attributes.api_group)} {where}")
    if reason:
        message = f"{message}: {reason}"
    group, resource, name = attributes.api_group, attributes.resource, attributes.name
    if not group and not resource:
        message = f"forbidden: {message}"
    else:
        qualified = f"{resource}.{group}" if group else resource
        message = f"{qualified} {q(name)} is forbidden: {message}" if name \
            else f"{qualified} is forbidden: {message}"
    return errors.StatusError(403, "Forbidden", message, name=name, group=group,
                              kind=resource)


def with_authorization(handler: Handler, authorizer: Authorizer) -> Handler:
    """Serve what the authorizer allows; 403 otherwise, 500 when it could not decide (cf.
    WithAuthorization)."""

    async def serve(request: APIRequest) -> AnyResponse:
        attributes = authorizer_attributes(request)
        try:
            decision, reason = await authorizer.authorize(attributes)
        except Exception as exc:
            log.error("authorizing %s %s failed: %s", request.method, request.path, exc)
            # kube's responsewriters.InternalError words it so (as text; kext answers a Status)
            raise errors.StatusError(
                500, "InternalError",
                f"Internal Server Error: {errors.go_quote(request.path)}: {exc}",
            ) from None
        if decision is Decision.ALLOW:
            return await handler(request)
        log.debug("forbidden %s %s: %s", request.method, request.path, reason)
        raise forbidden(attributes, reason)

    return serve


def with_impersonation(handler: Handler, authorizer: Authorizer) -> Handler:
    """Run the request as the user its Impersonate-* headers name, when its caller may
    impersonate them (kext/auth/impersonation.py); 403 in kube's words when not, 400 when
    the headers make no sense. The headers do not reach the handler (cf.
    WithImpersonation)."""

    async def serve(request: APIRequest) -> AnyResponse:
        assert request.user is not None, "impersonation runs after authentication"
        try:
            user = await impersonation.impersonate(request.user, request.raw_headers,
                                                   authorizer)
        except impersonation.ImpersonationError as exc:
            raise errors.bad_request(str(exc)) from None
        except impersonation.ImpersonationForbidden as exc:
            raise forbidden(exc.attributes, exc.reason) from None
        if user is not None:
            request.user = user
            request.raw_headers = impersonation.without_impersonation_headers(
                request.raw_headers)
            request.headers = {k: v for k, v in request.headers.items()
                               if not impersonation.is_impersonation_header(k)}
        return await handler(request)

    return serve


class InFlight:
    """Requests being served now (watches excluded), by kind; shutdown waits for zero."""

    def __init__(self, max_readonly: int, max_mutating: int, metrics: Metrics) -> None:
        self.limits = {"readonly": max_readonly, "mutating": max_mutating}
        self.counts = {"readonly": 0, "mutating": 0}
        self._idle = asyncio.Event()
        self._idle.set()
        # this server's apiserver_current_inflight_requests is read from these counts when
        # scraped
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


def with_metrics(handler: Handler, metrics: Metrics) -> Handler:
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


async def _counted(chunks: AsyncIterator[bytes], gauge: Gauge) -> AsyncIterator[bytes]:
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


def chain(handler: Handler, authenticator: UnionAuthenticator, authorizer: Authorizer,
          inflight: InFlight, timeout_seconds: float, metrics: Metrics) -> Handler:
    """The full chain around the router, in kube-apiserver's order (audit and impersonation,
    when kext has them, go between authentication and the in-flight limit)."""
    inner = with_timeout(handler, timeout_seconds)
    inner = with_authorization(inner, authorizer)
    inner = with_max_inflight(inner, inflight)
    inner = with_impersonation(inner, authorizer)
    inner = with_authentication(inner, authenticator)
    return with_metrics(with_status_errors(inner), metrics)


__all__ = ["chain", "status_response"]
