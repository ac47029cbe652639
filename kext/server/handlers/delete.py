"""delete and deletecollection (cf. apiserver pkg/endpoints/handlers/delete.go): the store
calls the request's delete admission on each object it is about to delete."""

from __future__ import annotations

from kext.admission.attributes import DELETE
from kext.api import errors
from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, delete_options, list_options, selection
from kext.server.negotiation import negotiate
from kext.server.request import APIRequest, Response, object_response


async def delete(request: APIRequest, scope: Scope) -> Response:
    if scope.subresource:
        raise errors.method_not_supported(scope.group, scope.resource, "delete")
    target = negotiate(request.header("accept"))
    ctx, options = delete_options(request, scope)
    validate = scope.chain.delete_validation(scope.attributes(ctx, DELETE, scope.name))
    result = await scope.store.delete(ctx, scope.name, scope.version.name, options, validate)
    if not result.deleted:
        # Finalizers keep the object: answer with it, now carrying deletionTimestamp.
        return object_response(200, transform.to_object(result.object, target, scope, request),
                               target)
    metadata = result.object["metadata"]
    details = {"name": scope.name, "group": scope.group, "kind": scope.resource,
               "uid": metadata.get("uid", "")}
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
              "details": details}
    return object_response(200, status, target)


async def delete_collection(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    list_options(request)  # validates the list parameters kube would reject
    ctx, options = delete_options(request, scope)
    # as kube: the attributes of a deletecollection name no object
    validate = scope.chain.delete_validation(scope.attributes(ctx, DELETE))
    result = await scope.store.delete_collection(
        ctx, scope.version.name, selection(request, scope), options, validate
    )
    return object_response(200, result, target)
