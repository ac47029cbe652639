"""audit.k8s.io/v1 Event: what the request path records (`AuditEvent`, cheap to fill: plain
values and the raw bodies) and its rendering to one JSON line (`render`, run by the audit
log's writer thread, off the event loop: bodies are decoded and managed fields dropped
there). Field order and omissions follow the Go type, so a line reads like kube-apiserver's.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import yaml

from kext.audit.policy import Level
from kext.auth.user import UserInfo

REQUEST_RECEIVED = "RequestReceived"
RESPONSE_STARTED = "ResponseStarted"
RESPONSE_COMPLETE = "ResponseComplete"
PANIC = "Panic"

# kube truncates user agents longer than this (maybeTruncateUserAgent)
MAX_USER_AGENT = 1024
# query parameters whose values never reach a log: credentials
SECRET_PARAMETERS = frozenset({"access_token", "token"})


@dataclass
class AuditEvent:
    """One request's event, filled in as the request passes the chain; `at_stage` takes the
    snapshot that is written."""

    level: Level
    audit_id: str
    request_uri: str
    verb: str
    user: UserInfo | None
    source_ips: list[str]
    user_agent: str
    object_ref: dict[str, str] | None
    received: float  # time.time() when the request arrived
    omit_managed_fields: bool = False
    impersonated_user: UserInfo | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    # what a create's or update's body says of its object (name, namespace, uid,
    # resourceVersion): objectRef takes those from there after RequestReceived (cf.
    # LogRequestObject). Read when the event is made, so a Metadata event holds no body.
    body_object_ref: dict[str, str] | None = None
    request_body: bytes = b""  # kept at the Request and RequestResponse levels
    request_content_type: str = ""
    response_code: int = 0
    response_status: dict[str, Any] | None = None  # set outright (a Status error, a panic)
    response_body: bytes = b""
    response_content_type: str = ""
    stage: str = ""
    stage_timestamp: float = 0.0

    def at_stage(self, stage: str, now: float) -> AuditEvent:
        """A copy of the event as it stands at stage, for the sink (which writes it later,
        on another thread: nothing it holds is changed afterwards)."""
        snapshot = copy.copy(self)
        snapshot.stage = stage
        snapshot.stage_timestamp = self.received if stage == REQUEST_RECEIVED else now
        snapshot.annotations = dict(self.annotations)
        return snapshot


def micro_time(timestamp: float) -> str:
    """metav1.MicroTime on the wire: RFC 3339 in UTC with microseconds."""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def redact_uri(uri: str) -> str:
    """The request URI with credential query parameters (access_token) blanked."""
    split = urlsplit(uri)
    if not split.query or not any(p in split.query for p in SECRET_PARAMETERS):
        return uri
    pairs = [(k, "REDACTED" if k in SECRET_PARAMETERS else v)
             for k, v in parse_qsl(split.query, keep_blank_values=True)]
    return f"{split.path}?{urlencode(pairs)}"


def user_info(user: UserInfo) -> dict[str, Any]:
    """authentication/v1 UserInfo (empty fields omitted)."""
    out: dict[str, Any] = {}
    if user.name:
        out["username"] = user.name
    if user.uid:
        out["uid"] = user.uid
    if user.groups:
        out["groups"] = list(user.groups)
    if user.extra:
        out["extra"] = {k: list(v) for k, v in user.extra.items()}
    return out


def render(event: AuditEvent) -> bytes:
    """The event as one line of JSON (audit.k8s.io/v1, as kube's log backend writes it)."""
    out: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": event.level.wire,
        "auditID": event.audit_id,
        "stage": event.stage,
        "requestURI": event.request_uri,
        "verb": event.verb,
        "user": user_info(event.user) if event.user is not None else {},
    }
    if event.impersonated_user is not None:
        out["impersonatedUser"] = user_info(event.impersonated_user)
    if event.source_ips:
        out["sourceIPs"] = event.source_ips
    if event.user_agent:
        out["userAgent"] = event.user_agent
    object_ref = dict(event.object_ref) if event.object_ref is not None else None
    request_object = None
    # The request body is read by the handler, after RequestReceived (as kube logs it).
    if event.stage != REQUEST_RECEIVED:
        if event.body_object_ref:
            object_ref = object_ref or {}
            for key, value in event.body_object_ref.items():
                if not object_ref.get(key):
                    object_ref[key] = value
        if event.request_body and event.level >= Level.REQUEST:
            request_object = decode_body(event.request_body, event.request_content_type)
    if object_ref is not None:
        out["objectRef"] = {k: object_ref[k] for k in _OBJECT_REF_ORDER if object_ref.get(k)}
    status = response_status(event)
    if status is not None:
        out["responseStatus"] = status
    if request_object is not None and event.level >= Level.REQUEST:
        out["requestObject"] = _without_managed_fields(request_object) \
            if event.omit_managed_fields else request_object
    if event.level >= Level.REQUEST_RESPONSE and event.response_body \
            and event.stage in (RESPONSE_COMPLETE, PANIC):
        response_object = decode_body(event.response_body, event.response_content_type)
        if response_object is not None:
            out["responseObject"] = _without_managed_fields(response_object) \
                if event.omit_managed_fields else response_object
    out["requestReceivedTimestamp"] = micro_time(event.received)
    out["stageTimestamp"] = micro_time(event.stage_timestamp)
    if event.annotations:
        out["annotations"] = event.annotations
    return orjson.dumps(out) + b"\n"


_OBJECT_REF_ORDER = ("resource", "namespace", "name", "uid", "apiGroup", "apiVersion",
                     "resourceVersion", "subresource")


# past this, a body is not read for its object's name (the URL names an update's object)
MAX_BODY_FOR_OBJECT_REF = 1024 * 1024


def body_object_ref(body: bytes, content_type: str) -> dict[str, str] | None:
    """The namespace, name, uid and resourceVersion a request body gives its object."""
    if not body or len(body) > MAX_BODY_FOR_OBJECT_REF:
        return None
    obj = decode_body(body, content_type)
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(metadata, dict):
        return None
    return {k: metadata[k] for k in ("namespace", "name", "uid", "resourceVersion")
            if isinstance(metadata.get(k), str) and metadata[k]}


def response_status(event: AuditEvent) -> dict[str, Any] | None:
    """responseStatus: the code, and for a Status body its bounded fields (cf.
    LogResponseObject); None before the response started."""
    if event.response_status is not None:
        return event.response_status
    if not event.response_code:
        return None
    body = event.response_body
    if body and event.response_content_type.startswith("application/json") and (
        event.response_code >= 300 or b'"kind":"Status"' in body[:40]
    ):
        decoded = decode_body(body, event.response_content_type)
        if isinstance(decoded, dict) and decoded.get("kind") == "Status":
            fields = status_fields(decoded)
            fields.pop("code", None)
            fields["code"] = event.response_code  # the code written, as kube's writer sets it
            return fields
    return {"metadata": {}, "code": event.response_code}


def status_fields(status: dict[str, Any]) -> dict[str, Any]:
    """The fields of a meta/v1 Status an audit event keeps."""
    out: dict[str, Any] = {"metadata": {}}
    for key in ("status", "message", "reason", "details", "code"):
        if status.get(key):
            out[key] = status[key]
    return out


def decode_body(body: bytes, content_type: str) -> Any:
    """A JSON or YAML body as JSON values, or None when it is neither."""
    media = content_type.split(";")[0].strip().lower()
    try:
        if media.endswith("yaml"):
            decoded = yaml.safe_load(body)
            orjson.dumps(decoded)  # only what JSON can hold
            return decoded
        if media.endswith("json") or not media:
            return orjson.loads(body)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, yaml.YAMLError):
        return None
    return None


def _without_managed_fields(obj: Any) -> Any:
    """obj without metadata.managedFields, for an object, a list's items or a Table's rows."""
    if not isinstance(obj, dict):
        return obj
    out = obj
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and "managedFields" in metadata:
        out = {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    items = obj.get("items")
    if isinstance(items, list):
        out = {**out, "items": [_without_managed_fields(i) for i in items]}
    rows = obj.get("rows")
    if obj.get("kind") == "Table" and isinstance(rows, list):
        out = {**out, "rows": [
            {**r, "object": _without_managed_fields(r["object"])}
            if isinstance(r, dict) and isinstance(r.get("object"), dict) else r for r in rows
        ]}
    return out
