"""update: PUT replaces the object, or its status through `/status`
(cf. apiserver pkg/endpoints/handlers/update.go). Admission runs inside the store's
guaranteed update, so an update retried after a conflict is admitted again."""

from __future__ import annotations

from typing import Any

from kext.admission.attributes import UPDATE
from kext.api import errors
from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, write_context
from kext.server.negotiation import negotiate
from kext.server.request import APIRequest, Response, object_response


async def update(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    ctx = write_context(request, scope, "UpdateOptions")
    body = request.json_body()
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be a JSON or YAML object")

    async def replace(_current: dict[str, Any] | None) -> dict[str, Any]:
        return body

    admission = scope.chain.admission(scope.attributes(ctx, UPDATE, scope.name))
    result = await scope.store.update(ctx, scope.name, scope.version.name, replace, admission)
    obj = transform.to_object(result.object, target, scope, request)
    return object_response(200, obj, target, result.warnings)
