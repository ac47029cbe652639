"""The one exception hierarchy of kext's API, and its `meta/v1 Status` form.

Every failure a client can see is a `StatusError`; the server turns it into a Status body in
one place. Constructors mirror k8s.io/apimachinery/pkg/api/errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One entry of `details.causes`: a bad field and why."""

    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass
class StatusError(Exception):
    """An API error: HTTP code, Status reason, message and optional details."""

    code: int
    reason: str
    message: str
    name: str = ""
    group: str = ""
    kind: str = ""
    causes: list[Cause] = field(default_factory=list)
    retry_after_seconds: int = 0

    def __str__(self) -> str:
        return self.message

    def status(self) -> dict[str, Any]:
        """The `meta/v1 Status` object for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [c.to_dict() for c in self.causes]
        if self.retry_after_seconds:
            details["retryAfterSeconds"] = self.retry_after_seconds
        if details:
            body["details"] = details
        return body


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def forbidden(message: str) -> StatusError:
    return StatusError(403, "Forbidden", message)


def not_found(group: str, resource: str, name: str) -> StatusError:
    return StatusError(
        404, "NotFound", f'{_qualified(group, resource)} "{name}" not found',
        name=name, group=group, kind=resource,
    )


def path_not_found(path: str) -> StatusError:
    return StatusError(404, "NotFound", f"the server could not find the requested resource ({path})")


def method_not_supported(group: str, resource: str, action: str) -> StatusError:
    return StatusError(
        405, "MethodNotAllowed",
        f"{action} is not supported on resources of kind {_qualified(group, resource)!r}",
        group=group, kind=resource,
    )


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def already_exists(group: str, resource: str, name: str) -> StatusError:
    return StatusError(
        409, "AlreadyExists", f'{_qualified(group, resource)} "{name}" already exists',
        name=name, group=group, kind=resource,
    )


def conflict(group: str, resource: str, name: str, why: str) -> StatusError:
    return StatusError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {why}',
        name=name, group=group, kind=resource,
    )


def gone(message: str) -> StatusError:
    return StatusError(410, "Gone", message)


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def request_entity_too_large(message: str) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json-patch+json, application/merge-patch+json, "
        f"application/apply-patch+yaml (got {content_type!r})",
    )


def invalid(group: str, kind: str, name: str, causes: list[Cause]) -> StatusError:
    summary = ", ".join(
        f"{c.field}: {c.message}" if c.field else c.message for c in causes
    )
    return StatusError(
        422, "Invalid", f'{kind}.{group} "{name}" is invalid: {summary}' if group
        else f'{kind} "{name}" is invalid: {summary}',
        name=name, group=group, kind=kind, causes=causes,
    )


def too_many_requests(message: str, retry_after_seconds: int = 1) -> StatusError:
    return StatusError(429, "TooManyRequests", message, retry_after_seconds=retry_after_seconds)


def internal_error(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def timeout(message: str, retry_after_seconds: int = 0) -> StatusError:
    return StatusError(504, "Timeout", message, retry_after_seconds=retry_after_seconds)
