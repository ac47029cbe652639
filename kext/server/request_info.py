"""Parse a request path and method into what it asks for (cf. k8s.io/apiserver
pkg/endpoints/request/requestinfo.go)."""

from __future__ import annotations

from dataclasses import dataclass

from kext.api.errors import StatusError
from kext.api.selectors import parse_field_selector

# A GET with ?watch=true (or under the deprecated /watch/ prefix) is a watch.
_WATCH_TRUE = ("true", "1")


@dataclass(frozen=True)
class RequestInfo:
    """What a request is about: a resource request (verb on group/version/resource) or a
    non-resource path like /healthz."""

    is_resource_request: bool
    path: str
    verb: str  # get list watch create update patch delete deletecollection, or the lowercase method
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def parse_request_info(method: str, path: str, query: dict[str, list[str]]) -> RequestInfo:
    """Resolve a request. Only /apis/<group>/<version>/... paths are resource requests."""
    method = method.upper()
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 3 or parts[0] != "apis":
        return RequestInfo(False, path, method.lower())
    group, version = parts[1], parts[2]
    rest = parts[3:]
    verb = {
        "POST": "create",
        "GET": "get",
        "HEAD": "get",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method, method.lower())
    if rest and rest[0] == "watch":
        verb = "watch"
        rest = rest[1:]
    if not rest:
        return RequestInfo(False, path, method.lower())
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace = rest[1]
        rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        # Deeper paths name nothing kext serves; keep them recognisable as such.
        subresource = "/".join(rest[2:])
    if not name:
        if verb == "get":
            verb = "list"
        elif verb == "delete":
            verb = "deletecollection"
    if verb == "list" and query.get("watch", [""])[-1].lower() in _WATCH_TRUE:
        verb = "watch"
    if verb in ("list", "watch") and not name:
        # A list or watch of one object by fieldSelector names it, for authorization (RBAC
        # resourceNames) as kube's RequestInfoFactory does.
        name = _selected_name(query.get("fieldSelector", [""])[-1])
    return RequestInfo(
        True, path, verb, group, version, namespace, resource, subresource, name
    )


def _selected_name(field_selector: str) -> str:
    """The name `metadata.name=<name>` in a field selector requires, if a valid path segment."""
    if "metadata.name" not in field_selector:
        return ""
    try:
        name = parse_field_selector(field_selector).requires_exact_match("metadata.name")
    except StatusError:  # a selector the handler refuses later, in its own words
        return ""
    if not name or name in (".", "..") or "/" in name or "%" in name:
        return ""
    return name
