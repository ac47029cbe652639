"""The request filter chain, outermost first (cf. apiserver pkg/server/filters,
pkg/endpoints/filters and DefaultBuildHandlerChain): audit ID → request log line →
Retry-After while shutting down → Status errors → authentication (failures audited) → audit
→ (impersonation) → in-flight limit → authorization → request metrics → timeout → handler.
Each filter wraps a Handler and returns a Handler.

Request metrics are recorded where kube-apiserver's handlers record them: inside
authorization (a 401 or 403 is not counted in apiserver_request_total, as in kube), for the
resources kext serves and for the few non-resource paths kube counts (/healthz, /livez,
/readyz, /apis), so no label ever holds an object's name or a raw path. The in-flight limit
counts the 429s it answers itself, and the timeout filter its 504s, in
apiserver_request_terminations_total as well."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import orjson

from kext.api import errors
from kext.audit import (
    PANIC,
    REQUEST_RECEIVED,
    RESPONSE_COMPLETE,
    RESPONSE_STARTED,
    AuditEvent,
    Level,
    Policy,
    RequestAuditConfig,
    redact_uri,
)
from kext.audit.event import MAX_USER_AGENT, body_object_ref, status_fields
from kext.auth import impersonation
from kext.auth.authentication import Credentials, UnionAuthenticator
from kext.auth.authorization.authorizer import Attributes, Authorizer, Decision
from kext.auth.user import UserInfo
from kext.metrics import Metrics
from kext.server.request import (
    AnyResponse,
    APIRequest,
    Handler,
    Response,
    StreamResponse,
    status_response,
)

log = logging.getLogger(__name__)
# one line per request: DEBUG, or INFO for a server error or a slow request (kube-apiserver
# logs request lines at -v=3 only; its traces of slow requests at the default verbosity)
httplog = logging.getLogger("kext.httplog")
SLOW_REQUEST_SECONDS = 1.0

LONG_RUNNING_VERBS = ("watch",)
MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
AUDIT_ID_HEADER = "Audit-ID"
DECISION_ANNOTATION = "authorization.k8s.io/decision"
REASON_ANNOTATION = "authorization.k8s.io/reason"
COMPONENT = "apiserver"
# The non-resource paths kube-apiserver counts in apiserver_request_total, labelled by path
# (as subresource), with the component each is counted under (healthz.go passes none).
INSTRUMENTED_PATHS = {"/healthz": "", "/livez": "", "/readyz": "", "/apis": COMPONENT}
# kube's validRequestMethods; anything else is reported as "other"
REPORTED_VERBS = frozenset({"APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET",
                            "LIST", "PATCH", "POST", "PROXY", "PUT", "UPDATE", "WATCH",
                            "WATCHLIST"})
# not turned away while shutting down: probes and scrapes (kube's WithRetryAfter)
RETRY_AFTER_EXEMPT = ("/readyz", "/livez", "/healthz", "/metrics")
SHUTTING_DOWN = b"The apiserver is shutting down, please try again later.\n"

# (group, version, resource) -> the subresources served ("" for the resource itself)
ServedResources = Mapping[tuple[str, str, str], frozenset[str]]


def is_long_running(request: APIRequest) -> bool:
    return request.info.verb in LONG_RUNNING_VERBS


# -- streams


class _StreamEnd:
    """A stream's chunks wrapped once, however many filters need something done when it
    ends (each wrapping layer costs once per event per watcher). The callbacks run once:
    when the stream ends, fails or is closed, or is closed without ever being read."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.callbacks: list[Callable[[], object]] = []
        self._chunks = chunks
        self._iterator: AsyncGenerator[bytes, None] | None = None
        self._ended = False

    def __aiter__(self) -> AsyncGenerator[bytes, None]:
        # `async for` then pulls from the generator itself, with no layer of ours per chunk
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def __anext__(self) -> bytes:
        return await self.__aiter__().__anext__()

    async def _run(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._chunks:
                yield chunk
        finally:
            await self._end()

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()
        await self._end()

    async def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            for callback in self.callbacks:
                callback()
        finally:
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                await aclose()


def on_stream_end(response: StreamResponse, callback: Callable[[], object]) -> None:
    """Run callback once the stream of response has ended (callbacks run in the order they
    were added: the innermost filter's first)."""
    chunks = response.chunks
    if not isinstance(chunks, _StreamEnd):
        chunks = _StreamEnd(chunks)
        response.chunks = chunks
    chunks.callbacks.append(callback)


# -- labels


def request_scope(request: APIRequest) -> str:
    """kube's CleanScope: resource (a named object, or a create), namespace, cluster, or ""
    for a non-resource request."""
    info = request.info
    if info.name or info.verb == "create":
        return "resource"
    if info.namespace:
        return "namespace"
    return "cluster" if info.is_resource_request else ""


def reported_verb(request: APIRequest, scope: str) -> str:
    """kube-apiserver's `verb` label: the method in upper case, LIST for a GET of a
    collection, WATCH for a watch, APPLY for a server-side apply (cf. CleanVerb)."""
    if request.info.verb == "watch":
        return "WATCH"
    method = request.method.upper()
    if method in ("GET", "HEAD"):
        return "LIST" if scope not in ("resource", "") else "GET"
    if method == "PATCH" and request.header("content-type").split(";")[0].strip() \
            == "application/apply-patch+yaml":
        return "APPLY"
    return method if method in REPORTED_VERBS else "other"


def dry_run_label(request: APIRequest) -> str:
    """kube's cleanDryRun: the dryRun values sorted and joined, "invalid" when one is not
    All."""
    values = request.query.get("dryRun")
    if not values:
        return ""
    if any(v != "All" for v in values):
        return "invalid"
    return "All"


def request_labels(request: APIRequest,
                   served: ServedResources | None) -> tuple[str, ...] | None:
    """(verb, dry_run, group, version, resource, subresource, scope, component) for a
    request kube would count, else None. served None: every resource request counts."""
    info = request.info
    if info.is_resource_request:
        if served is not None:
            subresources = served.get((info.api_group, info.api_version, info.resource))
            if subresources is None or info.subresource not in subresources:
                return None
        scope = request_scope(request)
        return (reported_verb(request, scope), dry_run_label(request), info.api_group,
                info.api_version, info.resource, info.subresource, scope, COMPONENT)
    path = request.path.rstrip("/") or "/"
    component = INSTRUMENTED_PATHS.get(path)
    if component is None:
        return None
    return (reported_verb(request, ""), dry_run_label(request), "", "", "", path, "",
            component)


def _dropped_labels(request: APIRequest, served: ServedResources | None) -> tuple[str, ...]:
    """The labels of a request the server turned away (429, 504): its own when it is counted
    at all, else without group, resource or path (cf. RecordDroppedRequest)."""
    labels = request_labels(request, served)
    if labels is not None:
        return labels
    scope = request_scope(request)
    return (reported_verb(request, scope), dry_run_label(request), "", "", "", "", scope,
            COMPONENT)


def _record_termination(metrics: Metrics, labels: tuple[str, ...], code: int) -> None:
    """A request the server ended in self-defense: apiserver_request_total and
    apiserver_request_terminations_total (cf. RecordRequestTermination)."""
    metrics.requests_total.labels(*labels, str(code)).inc()
    metrics.request_terminations.labels(labels[0], *labels[2:], str(code)).inc()


# -- audit ID and the request log


def with_audit_init(handler: Handler) -> Handler:
    """Give every request its audit ID (the Audit-ID header the aggregator sent, else a new
    UUID) and its arrival time, and echo the ID in the Audit-ID response header (cf.
    WithAuditInit and WithRequestReceivedTimestamp)."""

    async def serve(request: APIRequest) -> AnyResponse:
        if not request.received:
            request.received = time.time()
        request.audit_id = request.header(AUDIT_ID_HEADER) or new_audit_id()
        response = await handler(request)
        if not any(name.lower() == "audit-id" for name, _ in response.headers):
            response.headers.append((AUDIT_ID_HEADER, request.audit_id))
        return response

    return serve


def new_audit_id() -> str:
    """A random (version 4) UUID as text, as uuid.uuid4() makes it, at a third of the cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def with_http_logging(handler: Handler) -> Handler:
    """One log line per request, when it is done (a watch when its stream ends): verb, URI
    (credentials blanked), user, response code, latency, user agent, audit ID and source
    address; never a header (cf. httplog)."""

    async def serve(request: APIRequest) -> AnyResponse:
        response = await handler(request)
        if isinstance(response, StreamResponse):
            on_stream_end(response, functools.partial(_log_request, request, response.code,
                                                      True))
        else:
            _log_request(request, response.code, False)
        return response

    return serve


def _log_request(request: APIRequest, code: int, long_running: bool) -> None:
    latency = max(time.time() - request.received, 0.0)
    slow = latency >= SLOW_REQUEST_SECONDS and not long_running
    level = logging.INFO if code >= 500 or slow else logging.DEBUG
    if not httplog.isEnabledFor(level):
        return
    fields = {
        "verb": reported_verb(request, request_scope(request)),
        "URI": redact_uri(request.uri or request.path),
        "user": request.user.name if request.user is not None else "",
        "resp": code,
        "latency": go_duration(latency),
        "userAgent": request.header("user-agent"),
        "audit-ID": request.audit_id,
        "srcIP": request.remote,
    }
    httplog.log(level, "HTTP", extra={"fields": fields})


def go_duration(seconds: float) -> str:
    """A duration as Go prints one: 1.5s, 12.345ms, 250µs."""
    if seconds >= 1:
        return f"{seconds:.6g}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.6g}ms"
    return f"{seconds * 1e6:.6g}µs"


def with_retry_after(handler: Handler, not_accepting: Callable[[], bool]) -> Handler:
    """Once shutdown has closed the listener, answer new requests (on connections still
    open) with 429 and Retry-After, so clients go to another replica; probes and scrapes
    are still served (cf. WithRetryAfter)."""

    async def serve(request: APIRequest) -> AnyResponse:
        if not_accepting() and not request.path.startswith(RETRY_AFTER_EXEMPT):
            return Response(429, SHUTTING_DOWN, "text/plain; charset=utf-8",
                            [("Retry-After", "5"), ("X-Content-Type-Options", "nosniff")])
        return await handler(request)

    return serve


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


# -- authentication


def with_authentication(handler: Handler, authenticator: UnionAuthenticator,
                        auditor: Auditor | None = None) -> Handler:
    """Identify the caller and strip front-proxy identity headers; 401 when nobody is
    identified, audited when auditing is on (cf. WithAuthentication and
    WithFailedAuthenticationAudit)."""

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
            if auditor is not None:
                auditor.failed_authentication(request)
            raise errors.unauthorized()
        request.user = user
        return await handler(request)

    return serve


# -- audit


class AuditSink(Protocol):
    def process(self, event: AuditEvent) -> None:
        """Take an event snapshot to write; never waits."""


class Auditor:
    """One server's audit policy and sink, and the metrics they count in."""

    def __init__(self, policy: Policy, sink: AuditSink, metrics: Metrics) -> None:
        self.policy = policy
        self.sink = sink
        self.metrics = metrics

    def evaluate(self, request: APIRequest, user: UserInfo | None) -> RequestAuditConfig:
        config = self.policy.evaluate(user, request.info)
        self.metrics.audit_levels.labels(config.level.wire).inc()
        return config

    def new_event(self, request: APIRequest, config: RequestAuditConfig) -> AuditEvent:
        """The event of a request the policy audits (cf. LogRequestMetadata)."""
        info = request.info
        object_ref = None
        if info.is_resource_request:
            object_ref = {"resource": info.resource, "namespace": info.namespace,
                          "name": info.name, "apiGroup": info.api_group,
                          "apiVersion": info.api_version, "subresource": info.subresource}
        user_agent = request.header("user-agent")
        if len(user_agent) > MAX_USER_AGENT:
            user_agent = user_agent[:MAX_USER_AGENT] + "...TRUNCATED"
        content_type = request.header("content-type")
        named_in_body = None
        if info.verb in ("create", "update"):
            named_in_body = body_object_ref(request.body, content_type)
        return AuditEvent(
            level=config.level, audit_id=request.audit_id,
            request_uri=redact_uri(request.uri or request.path), verb=info.verb,
            user=request.user, source_ips=source_ips(request), user_agent=user_agent,
            object_ref=object_ref, received=request.received or time.time(),
            omit_managed_fields=config.omit_managed_fields,
            annotations=request.annotations, body_object_ref=named_in_body,
            request_body=request.body if config.level >= Level.REQUEST else b"",
            request_content_type=content_type,
        )

    def emit(self, event: AuditEvent, stage: str, config: RequestAuditConfig) -> None:
        """Hand the event at stage to the sink, unless the policy omits that stage (cf.
        ProcessEventStage)."""
        if stage in config.omit_stages:
            return
        self.metrics.audit_events.inc()
        self.sink.process(event.at_stage(stage, time.time()))

    def failed_authentication(self, request: APIRequest) -> None:
        """A request nobody could be identified for: one ResponseStarted event with the 401
        (cf. WithFailedAuthenticationAudit)."""
        config = self.evaluate(request, None)
        if config.level is Level.NONE:
            return
        event = self.new_event(request, config)
        event.response_code = 401
        event.response_status = status_fields(errors.unauthorized().status())
        self.emit(event, RESPONSE_STARTED, config)


def with_audit(handler: Handler, auditor: Auditor) -> Handler:
    """Audit the request as the policy says: RequestReceived, then ResponseComplete (a
    watch: ResponseStarted when its stream starts, ResponseComplete when it ends), or Panic
    for a handler that failed unexpectedly (cf. WithAudit). An inner filter that replaces
    request.user (impersonation) is recorded as impersonatedUser."""

    async def serve(request: APIRequest) -> AnyResponse:
        config = auditor.evaluate(request, request.user)
        if config.level is Level.NONE:
            return await handler(request)
        event = auditor.new_event(request, config)
        auditor.emit(event, REQUEST_RECEIVED, config)
        user = request.user
        try:
            response = await handler(request)
        except errors.StatusError as exc:
            _impersonated(event, request, user)
            status = exc.status()
            event.response_code = exc.code
            event.response_status = status_fields(status)
            if config.level >= Level.REQUEST_RESPONSE:
                event.response_body = orjson.dumps(status)
                event.response_content_type = "application/json"
            auditor.emit(event, RESPONSE_COMPLETE, config)
            raise
        except asyncio.CancelledError:
            # the client went away before an answer (kube: "Connection closed early")
            event.response_status = {"metadata": {}, "status": "Success",
                                     "message": "Connection closed early", "code": 200}
            auditor.emit(event, RESPONSE_COMPLETE, config)
            raise
        except Exception as exc:
            event.response_status = {"metadata": {}, "status": "Failure",
                                     "message": f"APIServer panic'd: {exc}",
                                     "reason": "InternalError", "code": 500}
            auditor.emit(event, PANIC, config)
            raise
        _impersonated(event, request, user)
        event.response_code = response.code
        if isinstance(response, StreamResponse):
            auditor.emit(event, RESPONSE_STARTED, config)
            on_stream_end(response, functools.partial(auditor.emit, event, RESPONSE_COMPLETE,
                                                      config))
            return response
        event.response_body = response.body
        event.response_content_type = response.content_type
        auditor.emit(event, RESPONSE_COMPLETE, config)
        return response

    return serve


def _impersonated(event: AuditEvent, request: APIRequest, user: UserInfo | None) -> None:
    if request.user is not user and request.user is not None:
        event.impersonated_user = request.user


def source_ips(request: APIRequest) -> list[str]:
    """X-Forwarded-For's addresses, X-Real-Ip's if not among them, then the peer unless it
    is already last (cf. utilnet.SourceIPs)."""
    ips: list[str] = []
    for part in request.header("x-forwarded-for").split(","):
        ip = _ip(part)
        if ip:
            ips.append(ip)
    real = _ip(request.header("x-real-ip"))
    if real and real not in ips:
        ips.append(real)
    peer = _ip(request.remote)
    if peer and (not ips or ips[-1] != peer):
        ips.append(peer)
    return ips


def _ip(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


# -- authorization


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
    WithAuthorization). The decision and its reason become audit annotations."""

    async def serve(request: APIRequest) -> AnyResponse:
        attributes = authorizer_attributes(request)
        try:
            decision, reason = await authorizer.authorize(attributes)
        except Exception as exc:
            log.error("authorizing %s %s failed: %s", request.method, request.path, exc)
            request.annotations[REASON_ANNOTATION] = "internal error"
            # kube's responsewriters.InternalError words it so (as text; kext answers a Status)
            raise errors.StatusError(
                500, "InternalError",
                f"Internal Server Error: {errors.go_quote(request.path)}: {exc}",
            ) from None
        if decision is Decision.ALLOW:
            request.annotations[DECISION_ANNOTATION] = "allow"
            request.annotations[REASON_ANNOTATION] = reason
            return await handler(request)
        request.annotations[DECISION_ANNOTATION] = "forbid"
        request.annotations[REASON_ANNOTATION] = reason
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


# -- in-flight limit


class InFlight:
    """Requests being served now by kind (watches apart), and watch streams open; shutdown
    waits for both to reach zero."""

    def __init__(self, max_readonly: int, max_mutating: int, metrics: Metrics) -> None:
        self.limits = {"readonly": max_readonly, "mutating": max_mutating}
        self.counts = {"readonly": 0, "mutating": 0}
        self.streams = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._no_streams = asyncio.Event()
        self._no_streams.set()
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

    def stream_started(self) -> None:
        self.streams += 1
        self._no_streams.clear()

    def stream_ended(self) -> None:
        self.streams -= 1
        if not self.streams:
            self._no_streams.set()

    async def drained(self, timeout: float) -> bool:
        """Wait (bounded) until no request is in flight; False if some still were."""
        return await _wait(self._idle, timeout)

    async def streams_ended(self, timeout: float) -> bool:
        """Wait (bounded) until every watch stream has been written to its end."""
        return await _wait(self._no_streams, timeout)


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def with_max_inflight(handler: Handler, inflight: InFlight, metrics: Metrics,
                      served: ServedResources | None = None) -> Handler:
    """Reject with 429 and Retry-After past the in-flight limits (counted as kube's
    RecordDroppedRequest counts them); watches are not limited, only followed."""

    async def serve(request: APIRequest) -> AnyResponse:
        if is_long_running(request):
            response = await handler(request)
            if isinstance(response, StreamResponse):
                inflight.stream_started()
                on_stream_end(response, inflight.stream_ended)
            return response
        kind = "mutating" if request.method in MUTATING_METHODS else "readonly"
        limit = inflight.limits[kind]
        if limit > 0 and inflight.counts[kind] >= limit:
            _record_termination(metrics, _dropped_labels(request, served), 429)
            raise errors.too_many_requests(
                "Too many requests, please try again later.", retry_after_seconds=1
            )
        inflight.enter(kind)
        try:
            return await handler(request)
        finally:
            inflight.leave(kind)

    return serve


# -- request metrics and timeout


def with_metrics(handler: Handler, metrics: Metrics,
                 served: ServedResources | None = None) -> Handler:
    """apiserver_request_total, apiserver_request_duration_seconds (from the request's
    arrival), apiserver_response_sizes (GET and LIST) and apiserver_longrunning_requests,
    labelled as kube-apiserver labels them. A watch is counted when its stream ends, as
    kube's handler returns then."""
    observe = _RequestObserver(metrics)

    async def serve(request: APIRequest) -> AnyResponse:
        labels = request_labels(request, served)
        if labels is None:
            return await handler(request)
        try:
            response = await handler(request)
        except errors.StatusError as exc:
            observe(request, labels, exc.code, status_response(exc))
            raise
        except asyncio.CancelledError:
            raise
        except Exception:
            observe(request, labels, 500, None)
            raise
        if isinstance(response, StreamResponse):
            gauge = metrics.longrunning.labels(labels[0], *labels[2:])
            gauge.inc()
            on_stream_end(response, gauge.dec)
            on_stream_end(response, functools.partial(observe, request, labels,
                                                      response.code, None))
            return response
        observe(request, labels, response.code, response)
        return response

    return serve


class _RequestObserver:
    """Records one request in the request metrics. The labelled children are kept by their
    labels (a bounded set): prometheus_client's labels() checks and locks on every call."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._totals: dict[tuple[str, ...], Any] = {}
        self._durations: dict[tuple[str, ...], Any] = {}
        self._sizes: dict[tuple[str, ...], Any] = {}

    def __call__(self, request: APIRequest, labels: tuple[str, ...], code: int,
                 response: Response | None) -> None:
        key = (*labels, str(code))
        total = self._totals.get(key)
        if total is None:
            total = self._totals[key] = self.metrics.requests_total.labels(*key)
        total.inc()
        duration = self._durations.get(labels)
        if duration is None:
            duration = self._durations[labels] = self.metrics.request_duration.labels(*labels)
        duration.observe(max(time.time() - request.received, 0.0) if request.received else 0.0)
        # kube sizes the responses of reads only
        if response is not None and (request.info.verb in ("get", "list")
                                     or not request.info.is_resource_request):
            sizes = self._sizes.get(labels)
            if sizes is None:
                sizes = self._sizes[labels] = self.metrics.response_sizes.labels(
                    labels[0], *labels[2:])
            sizes.observe(len(response.body))


def with_timeout(handler: Handler, seconds: float, metrics: Metrics | None = None,
                 served: ServedResources | None = None) -> Handler:
    """Answer 504 when a (non-watch) request runs past the request timeout (counted in
    apiserver_request_terminations_total, cf. WithTimeoutForNonLongRunningRequests)."""

    async def serve(request: APIRequest) -> AnyResponse:
        if is_long_running(request) or seconds <= 0:
            return await handler(request)
        try:
            return await asyncio.wait_for(handler(request), seconds)
        except TimeoutError:
            if metrics is not None:
                labels = _dropped_labels(request, served)
                metrics.request_terminations.labels(labels[0], *labels[2:], "504").inc()
            raise errors.timeout(
                "request did not complete within the allotted timeout", retry_after_seconds=1
            ) from None

    return serve


def chain(handler: Handler, authenticator: UnionAuthenticator, authorizer: Authorizer,
          inflight: InFlight, timeout_seconds: float, metrics: Metrics, *,
          auditor: Auditor | None = None, served: ServedResources | None = None,
          not_accepting: Callable[[], bool] | None = None) -> Handler:
    """The full chain around the router, in kube-apiserver's order. auditor: audit as its
    policy says (None: no audit); served: the resources counted in the request metrics
    (None: every resource request); not_accepting: true once shutdown closed the listener
    (new requests then get 429)."""
    inner = with_timeout(handler, timeout_seconds, metrics, served)
    inner = with_metrics(inner, metrics, served)
    inner = with_authorization(inner, authorizer)
    inner = with_max_inflight(inner, inflight, metrics, served)
    inner = with_impersonation(inner, authorizer)
    if auditor is not None:
        inner = with_audit(inner, auditor)
    inner = with_authentication(inner, authenticator, auditor)
    inner = with_status_errors(inner)
    if not_accepting is not None:
        inner = with_retry_after(inner, not_accepting)
    inner = with_http_logging(inner)
    return with_audit_init(inner)


__all__ = ["Auditor", "InFlight", "chain", "on_stream_end", "status_response"]
