"""patch: JSON patch and JSON merge patch applied to the current object inside the
guaranteed update, so a concurrent write re-applies the patch (cf. handlers/patch.go).
Strategic merge patch answers 415 as it does for CustomResources."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import orjson

from kext.admission.attributes import UPDATE
from kext.api import errors
from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, write_context
from kext.server.negotiation import negotiate
from kext.server.options import patch_options_causes
from kext.server.request import APIRequest, Response, object_response

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


async def patch(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    content_type = request.header("content-type").split(";")[0].strip()
    if content_type == STRATEGIC_MERGE_PATCH:
        raise errors.unsupported_media_type(content_type)
    if content_type not in (JSON_PATCH, MERGE_PATCH, APPLY_PATCH):
        raise errors.unsupported_media_type(content_type)
    force_raw = request.query.get("force")
    force = force_raw[-1].lower() == "true" if force_raw else None
    causes = patch_options_causes(content_type == APPLY_PATCH, request.param("fieldManager"),
                                  force)
    if causes:
        raise errors.invalid("meta.k8s.io", "PatchOptions", "", causes)
    ctx = write_context(request, scope, "PatchOptions", force)
    # a patch that creates (an apply) is admitted as a CREATE, as kube's patcher does
    admission = scope.chain.admission(scope.attributes(ctx, UPDATE, scope.name))
    if content_type == APPLY_PATCH:
        applied = request.json_body()
        result = await scope.store.apply(ctx, scope.name, scope.version.name, applied,
                                         bool(force), admission)
        obj = transform.to_object(result.object, target, scope, request)
        return object_response(201 if result.created else 200, obj, target, result.warnings)
    try:
        document = orjson.loads(request.body) if request.body else None
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"error decoding patch: {exc}") from None
    if content_type == JSON_PATCH:
        if not isinstance(document, list):
            raise errors.bad_request(
                "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
            )
        try:
            compiled = jsonpatch.JsonPatch(document)
        except (jsonpatch.InvalidJsonPatch, TypeError) as exc:
            raise errors.bad_request(f"invalid JSON patch: {exc}") from None
    elif not isinstance(document, dict):
        raise errors.bad_request("the merge patch must be a JSON object")

    async def apply(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            raise errors.not_found(scope.group, scope.resource, scope.name)
        if content_type == JSON_PATCH:
            try:
                patched = compiled.apply(current, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise errors.StatusError(
                    422, "Invalid", f"the server rejected our request due to an error in our "
                    f"request: {exc}",
                ) from None
        else:
            patched = merge_patch(current, document)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        return patched

    result = await scope.store.update(ctx, scope.name, scope.version.name, apply, admission)
    obj = transform.to_object(result.object, target, scope, request)
    return object_response(200, obj, target, result.warnings)
