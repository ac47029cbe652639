"""get and list (cf. apiserver pkg/endpoints/handlers/get.go)."""

from __future__ import annotations

from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, list_options, parse_resource_version, selection
from kext.server.negotiation import negotiate
from kext.server.request import APIRequest, Response, object_response


async def get(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    rv = parse_resource_version(request.param("resourceVersion"))
    obj = await scope.store.get(scope.namespace, scope.name, scope.version.name, rv)
    return object_response(200, transform.to_object(obj, target, scope, request), target)


async def list_(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    listed = await scope.store.get_list(
        scope.namespace, scope.version.name, selection(request, scope), list_options(request)
    )
    return object_response(200, transform.to_list(listed, target, scope, request), target)
