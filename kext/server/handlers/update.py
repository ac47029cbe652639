"""update: PUT replaces the object, or its status through `/status`
(cf. apiserver pkg/endpoints/handlers/update.go)."""

from __future__ import annotations

from typing import Any

from kext.api import errors
from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, write_options
from kext.server.negotiation import negotiate
from kext.server.request import APIRequest, Response, object_response


async def update(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    options = write_options(request, "UpdateOptions")
    body = request.json_body()
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON or YAML object")

    async def replace(_current: dict[str, Any] | None) -> dict[str, Any]:
        return body

    result = await scope.store.update(
        scope.namespace, scope.name, scope.version.name, replace, options, scope.subresource
    )
    obj = transform.to_object(result.object, target, scope, request)
    return object_response(200, obj, target, result.warnings)
