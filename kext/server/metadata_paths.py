"""The non-resource documents: discovery (/apis...), OpenAPI (/openapi/...), /version and
/api (404: kext serves no core group). Each is encoded once at start-up; requests only pick
one, check its ETag and write the bytes."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence

from kext import __version__
from kext.api import errors
from kext.api.discovery import DiscoveryDocuments, EncodedDocument, negotiate_discovery
from kext.api.openapi import OpenAPIDocuments, accepts_json
from kext.api.resource import ResourceDefinition
from kext.server.request import APIRequest, Response
from kext.server.routes import Router

ONE_YEAR = 365 * 24 * 3600


def _document(request: APIRequest, doc: EncodedDocument,
              extra: list[tuple[str, str]] | None = None) -> Response:
    headers = [("ETag", doc.etag), ("Vary", "Accept"), *(extra or [])]
    if doc.matches(request.header("if-none-match") or None):
        return Response(304, b"", doc.content_type, headers)
    return Response(200, doc.body, doc.content_type, headers)


def _not_acceptable() -> errors.StatusError:
    return errors.not_acceptable("only application/json is served for this document")


def install(router: Router, resources: Sequence[ResourceDefinition]) -> None:
    """Add the discovery, OpenAPI, /version and /api paths to the router."""
    discovery = DiscoveryDocuments(resources, __version__)
    openapi = OpenAPIDocuments(resources)

    async def apis(request: APIRequest) -> Response:
        doc = discovery.apis(request.header("accept"))
        if doc is None:
            raise _not_acceptable()
        return _document(request, doc, [("Cache-Control", "public")])

    async def group_or_version(request: APIRequest) -> Response:
        if negotiate_discovery(request.header("accept"), aggregated=False) is None:
            raise _not_acceptable()
        parts = request.path.strip("/").split("/")
        doc = None
        if len(parts) == 2:
            doc = discovery.group(parts[1])
        elif len(parts) == 3:
            doc = discovery.resource_list(parts[1], parts[2])
        if doc is None:
            raise errors.path_not_found(request.path)
        return _document(request, doc)

    async def version(request: APIRequest) -> Response:
        return _document(request, discovery.version)

    async def api(request: APIRequest) -> Response:
        raise errors.path_not_found(request.path)

    async def openapi_v2(request: APIRequest) -> Response:
        if not accepts_json(request.header("accept")):
            raise _not_acceptable()
        return _document(request, openapi.v2)

    async def openapi_v3(request: APIRequest) -> Response:
        if not accepts_json(request.header("accept")):
            raise _not_acceptable()
        path = request.path.rstrip("/")
        if path == "/openapi/v3":
            return _document(request, openapi.v3_index)
        doc = openapi.v3.get(path.removeprefix("/openapi/v3/"))
        if doc is None:
            raise errors.path_not_found(request.path)
        requested_hash = request.param("hash")
        if requested_hash and requested_hash != doc.hash:
            # An old hash: send the client to the current document, as kube-openapi does.
            return Response(301, b"", "text/plain", [("Location", f"{path}?hash={doc.hash}")])
        extra: list[tuple[str, str]] = []
        if requested_hash:
            expires = email.utils.formatdate(time.time() + ONE_YEAR, usegmt=True)
            extra = [("Cache-Control", "public, immutable"), ("Expires", expires)]
        return _document(request, doc, extra)

    router.add_path("/apis", apis)
    router.add_path("/apis/*", group_or_version)
    router.add_path("/version", version)
    router.add_path("/api", api)
    router.add_path("/api/*", api)
    router.add_path("/openapi/v2", openapi_v2)
    router.add_path("/openapi/v3", openapi_v3)
    router.add_path("/openapi/v3/*", openapi_v3)
