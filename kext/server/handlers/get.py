"""get and list (cf. apiserver pkg/endpoints/handlers/get.go)."""

from __future__ import annotations

from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, list_options, parse_resource_version, selection
from kext.server.negotiation import Representation, negotiate
from kext.server.request import APIRequest, Response, object_response


async def get(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    rv = parse_resource_version(request.param("resourceVersion"))
    obj = await scope.store.get(scope.namespace, scope.name, scope.version.name, rv)
    return object_response(200, transform.to_object(obj, target, scope, request), target)


async def list_(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    # a list of objects as JSON is built from the cache's encodings of them
    plain = target.representation is Representation.OBJECT and not target.yaml
    listed = await scope.store.get_list(
        scope.namespace, scope.version.name, selection(request, scope), list_options(request),
        encoded_items=plain,
    )
    return object_response(200, transform.to_list(listed, target, scope, request), target)
