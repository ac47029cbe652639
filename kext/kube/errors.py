"""What can go wrong talking to kube-apiserver: it answered with an error (`KubeStatusError`),
or it gave no answer (`KubeUnavailable`, and `KubeTimeout` when the caller's time ran out).

These are deliberately not `kext.api.errors.StatusError`: the cluster's 403 or 404 to kext is
not the answer kext owes its own client (a SubjectAccessReview that cannot be made is kext's
500), so the server's one error mapping must never pass one through by accident.
"""

from __future__ import annotations

from typing import Any

import orjson

# k8s.io/apimachinery's NewGenericServerResponse: reason and message for an error response
# whose body is not a Status (a proxy's text, an empty body).
_GENERIC: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "the server has asked for the client to provide credentials"),
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    409: ("Conflict", "the server reported a conflict"),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests",
          "the server has received too many requests and has asked us to try again later"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted, "
                     "but may still be processing the request"),
}


class KubeError(Exception):
    """Any failure of a call to kube-apiserver. Messages name the call, never a credential."""


class KubeUnavailable(KubeError):
    """No answer: connection refused or reset, TLS verification failed, or no response.
    `why` is the cause alone (e.g. "connection refused"), for callers that word the failure
    themselves; `tls` says the TLS handshake failed."""

    def __init__(self, message: str, why: str = "", tls: bool = False) -> None:
        super().__init__(message)
        self.why = why or message
        self.tls = tls


class KubeTimeout(KubeUnavailable, TimeoutError):
    """No answer within the time the caller gave."""


class KubeStatusError(KubeError):
    """kube-apiserver answered with an error: the meta/v1 Status it sent (or one built as
    client-go builds it when the body was not a Status)."""

    def __init__(self, code: int, reason: str, message: str,
                 status: dict[str, Any] | None = None, retry_after_seconds: float = 0) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or {}
        self.retry_after_seconds = retry_after_seconds

    def __repr__(self) -> str:
        return f"KubeStatusError({self.code}, {self.reason!r}, {self.message!r})"

    @classmethod
    def from_response(cls, code: int, body: bytes, retry_after_seconds: float = 0,
                      method: str = "GET") -> KubeStatusError:
        """The error an HTTP response with this code and body stands for."""
        status = _status_of(body)
        if status is not None:
            details = status.get("details") or {}
            retry = retry_after_seconds or _number(details.get("retryAfterSeconds"))
            return cls(int(status.get("code") or code), str(status.get("reason") or ""),
                       str(status.get("message") or ""), status, retry)
        text = body.decode("utf-8", "replace").strip()
        reason, message = _GENERIC.get(code, ("", ""))
        if code == 409 and method == "POST":
            reason = "AlreadyExists"
        if code in (403, 406, 415):
            reason = {403: "Forbidden", 406: "NotAcceptable", 415: "UnsupportedMediaType"}[code]
            message = text
        elif not reason:
            if code >= 500:
                reason = "InternalError"
                message = (f"an error on the server ({orjson.dumps(text).decode()}) "
                           "has prevented the request from succeeding")
            else:
                reason = "Unknown"
                message = (f"the server responded with the status code {code} "
                           "but did not return more information")
        return cls(code, reason, message, None, retry_after_seconds)


def _status_of(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict) and value.get("kind") == "Status":
        return value
    return None


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0
