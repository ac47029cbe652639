"""The server's own view of a request and response, independent of Twisted, so handlers and
filters can be driven in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from kext.api import errors
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

    def param(self, name: str, default: str = "") -> str:
        """The last value of a query parameter."""
        values = self.query.get(name)
        return values[-1] if values else default

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json_body(self) -> Any:
        """The body decoded from JSON or YAML by Content-Type; 400 when it does not parse."""
        if not self.body:
            raise errors.bad_request("the request body is empty")
        content_type = self.header("content-type", "application/json").split(";")[0].strip()
        try:
            if content_type in ("application/yaml", "application/apply-patch+yaml"):
                decoded = yaml.load(self.body, Loader=_YAML_LOADER)
                orjson.dumps(decoded)  # what YAML holds beyond JSON (binary...) is refused here
                return decoded
            return orjson.loads(self.body)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the request body could not be decoded: {exc}") from None


class _YAMLLoader(yaml.SafeLoader):
    """Safe YAML as Kubernetes reads request bodies: timestamps stay strings (as in JSON),
    mapping keys become strings, and aliases are refused (a few bytes of aliases can expand
    into gigabytes: CVE-2019-11253)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases are not accepted in request bodies")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        # keys become strings before they meet in a dict: true and 1 (equal in Python) stay
        # two keys, as sigs.k8s.io/yaml reads them
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
        pairs = self.construct_pairs(node, deep=True)
        return {k if isinstance(k, str) else _scalar_key(k): v for k, v in pairs}


def _scalar_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    raise yaml.YAMLError(f"a mapping key must be a string, not {type(key).__name__}")


_YAMLLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _YAMLLoader.yaml_implicit_resolvers.items()
}
_YAML_LOADER = _YAMLLoader


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
                    warnings: list[str] | None = None) -> Response:
    body, content_type = encode(obj, target)
    headers = [warning_header(w) for w in (warnings or [])]
    return Response(code, body, content_type, headers)


def status_response(error: errors.StatusError) -> Response:
    headers = []
    if error.retry_after_seconds:
        headers.append(("Retry-After", str(error.retry_after_seconds)))
    return Response(error.code, orjson.dumps(error.status()), "application/json", headers)
