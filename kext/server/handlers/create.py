"""create (cf. apiserver pkg/endpoints/handlers/create.go): the store creates the object
with the request's admission steps (mutating before the strategy, validating after)."""

from __future__ import annotations

from kext.admission.attributes import CREATE
from kext.api import errors
from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, write_context
from kext.server.negotiation import negotiate
from kext.server.request import APIRequest, Response, object_response


async def create(request: APIRequest, scope: Scope) -> Response:
    if scope.subresource:
        raise errors.method_not_supported(scope.group, scope.resource, "create")
    target = negotiate(request.header("accept"))
    ctx = write_context(request, scope)
    obj = request.json_body()
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON or YAML object")
    admission = scope.chain.admission(scope.attributes(ctx, CREATE))
    result = await scope.store.create(ctx, scope.version.name, obj, admission)
    body = transform.to_object(result.object, target, scope, request)
    return object_response(201, body, target, result.warnings)
