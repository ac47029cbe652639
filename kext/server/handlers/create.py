"""create (cf. apiserver pkg/endpoints/handlers/create.go)."""

from __future__ import annotations

from kext.api import errors
from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, write_options
from kext.server.negotiation import negotiate
from kext.server.request import APIRequest, Response, object_response


async def create(request: APIRequest, scope: Scope) -> Response:
    if scope.subresource:
        raise errors.method_not_supported(scope.group, scope.resource, "create")
    target = negotiate(request.header("accept"))
    options = write_options(request)
    obj = request.json_body()
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON or YAML object")
    result = await scope.store.create(scope.namespace, scope.version.name, obj, options)
    body = transform.to_object(result.object, target, scope, request)
    return object_response(201, body, target, result.warnings)
