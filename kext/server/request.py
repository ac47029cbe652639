"""The server's own view of a request and response, independent of Twisted, so handlers and
filters can be driven in memory."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from kext.api import errors, nesting, yamljson
from kext.auth.user import UserInfo
from kext.server.negotiation import Target
from kext.server.request_info import RequestInfo


@dataclass
class APIRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lowercase names; repeated headers joined with ","
    body: bytes
    info: RequestInfo
    # DER-encoded client certificate chain presented on the TLS connection (leaf first).
    peer_certificates: list[bytes] = field(default_factory=list)
    raw_headers: list[tuple[str, str]] = field(default_factory=list)
    user: UserInfo | None = None
    remote: str = ""
    uri: str = ""  # as sent: path and query
    # set by the outermost filters: when the request arrived (time.time()), its audit ID,
    # and the audit annotations later filters add (authorization's decision and reason)
    received: float = 0.0
    audit_id: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    def param(self, name: str, default: str = "") -> str:
        """The first value of a query parameter: kube decodes a repeated parameter from its
        first value (apimachinery pkg/runtime/conversion.go, Convert_Slice_string_To_*)."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json_body(self) -> Any:
        """The body decoded from JSON or YAML by Content-Type; 400 when it does not parse or
        nests deeper than kube-apiserver's decoding allows of kext."""
        if not self.body:
            raise errors.bad_request("the request body is empty")
        content_type = self.header("content-type", "application/json").split(";")[0].strip()
        try:
            if content_type in YAML_CONTENT_TYPES:
                return decode_yaml(self.body)
            return decode_json(self.body)
        except BodyDecodeError as exc:
            raise errors.bad_request(f"the request body could not be decoded: {exc}") from None


YAML_CONTENT_TYPES = ("application/yaml", "application/apply-patch+yaml")
# An integer of 19 digits or more may lie outside int64 (kube decodes it as a float)
_LONG_INTEGER = re.compile(rb"[0-9]{19}")


class BodyDecodeError(ValueError):
    """A request body that is not a JSON (or YAML) value kube would accept."""


def decode_json(body: bytes) -> Any:
    """A JSON body as kube decodes it: at most nesting.MAX_DEPTH levels deep (its
    managedFields a few more), integers past int64 as floats. BodyDecodeError otherwise."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit (1024) is far past kext's
            raise BodyDecodeError(f"exceeded max depth of {nesting.MAX_DEPTH}") from None
        raise BodyDecodeError(str(exc)) from None
    # Counting brackets is much cheaper than a walk: most bodies cannot be too deep.
    if (body.count(b"{") + body.count(b"[") > nesting.MAX_DEPTH
            or _LONG_INTEGER.search(body) is not None):
        try:
            nesting.check_object_depth(value)
        except ValueError as exc:
            raise BodyDecodeError(str(exc)) from None
    return value


def decode_yaml(body: bytes) -> Any:
    """A YAML body as kube decodes it (YAMLToJSON: kext.api.yamljson). A body that is JSON,
    as kubectl sends server-side apply patches, takes the fast path."""
    if body.lstrip()[:1] in (b"{", b"["):
        try:
            return decode_json(body)
        except BodyDecodeError:
            pass  # not JSON after all (a YAML flow mapping): read it as YAML
    try:
        # managedFields may nest deeper (nesting.check_object_depth measures them apart)
        value = yamljson.yaml_to_json(
            body, nesting.MAX_DEPTH + nesting.MANAGED_FIELDS_EXTRA_DEPTH + 2, nesting.MAX_DEPTH)
        return nesting.check_object_depth(value)
    except yaml.YAMLError as exc:
        raise BodyDecodeError(
            f"error converting YAML to JSON: yaml: {_yaml_problem(exc)}") from None
    except ValueError as exc:  # YAMLDecodeError and nesting's
        raise BodyDecodeError(f"error converting YAML to JSON: {exc}") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A parse error in one line: where and what (PyYAML's own text spans several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}{problem}"


@dataclass
class Response:
    code: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StreamResponse:
    """A long-running response (watch): chunks are written as they come, flushed each time."""

    chunks: AsyncIterator[bytes]
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    code: int = 200


AnyResponse = Response | StreamResponse
Handler = Callable[[APIRequest], Awaitable[AnyResponse]]


def encode(obj: Any, target: Target | None = None) -> tuple[bytes, str]:
    """Encode a response object as JSON (or YAML when asked); returns body and content type."""
    if target is not None and target.yaml:
        return yaml.safe_dump(obj, sort_keys=False).encode(), "application/yaml"
    return orjson.dumps(obj), "application/json"


def warning_header(text: str) -> tuple[str, str]:
    """A `Warning` response header as kube writes one: code 299, no agent, the text quoted."""
    return "Warning", f"299 - {errors.go_quote(text)}"


def object_response(code: int, obj: Any, target: Target | None = None,
                    warnings: Iterable[str] = ()) -> Response:
    body, content_type = encode(obj, target)
    return Response(code, body, content_type, warning_headers(warnings))


def warning_headers(warnings: Iterable[str]) -> list[tuple[str, str]]:
    """`Warning` headers as kube writes them, one per warning."""
    return [warning_header(w) for w in warnings]


def status_response(error: errors.StatusError) -> Response:
    headers = []
    if error.retry_after_seconds:
        headers.append(("Retry-After", str(error.retry_after_seconds)))
    return Response(error.code, orjson.dumps(error.status()), "application/json", headers)
