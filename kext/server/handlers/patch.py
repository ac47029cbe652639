"""patch: JSON patch and JSON merge patch applied to the current object inside the
guaranteed update, so a concurrent write re-applies the patch (cf. handlers/patch.go).
Strategic merge patch answers 415 as it does for CustomResources."""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonpatch

from kext.admission.attributes import UPDATE
from kext.api import errors, nesting
from kext.server.handlers import transform
from kext.server.handlers.scope import Scope, write_context
from kext.server.negotiation import negotiate
from kext.server.options import patch_options_causes
from kext.server.request import (
    APIRequest,
    BodyDecodeError,
    Response,
    decode_json,
    object_response,
)

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


# kube's limit on the operations of one JSON patch (handlers/patch.go maxJSONPatchOperations)
MAX_JSON_PATCH_OPERATIONS = 10000


def _patch_does_not_apply(why: str) -> errors.StatusError:
    """kube's answer when a JSON patch does not apply: 422 Invalid (patch.go applyJSPatch,
    NewGenericServerResponse), here with the reason why."""
    return errors.StatusError(
        422, "Invalid",
        f"the server rejected our request due to an error in our request: {why}",
    )


def _compile_json_patch(document: Any) -> jsonpatch.JsonPatch:
    """A JSON patch document compiled; 400 when it is not a list of operations, 413 past
    kube's operation limit, 422 for a pointer that cannot address anything."""
    if not isinstance(document, list):
        raise errors.bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
        )
    if len(document) > MAX_JSON_PATCH_OPERATIONS:
        raise errors.request_entity_too_large(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
            f"got {len(document)}")
    for operation in document:
        if not isinstance(operation, dict):
            continue  # jsonpatch refuses it below
        for member in ("path", "from"):
            pointer = operation.get(member)
            if isinstance(pointer, str):
                if not pointer.startswith("/"):
                    # as evanphx/json-patch: a pointer without a leading "/" names nothing
                    op = operation.get("op")
                    raise _patch_does_not_apply(
                        f"{op} operation does not apply: doc is missing path: "
                        f"{errors.go_quote(pointer)}")
                operation[member] = _LONE_TILDE.sub("~0", pointer)
    try:
        return jsonpatch.JsonPatch(document)
    except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException, TypeError) as exc:
        raise errors.bad_request(f"invalid JSON patch: {exc}") from None


# A "~" that starts no escape: evanphx/json-patch (kube's) keeps it as a literal "~" where
# RFC 6901 would refuse the pointer, so "/a~9" adds the field "a~9".
_LONE_TILDE = re.compile(r"~(?![01])")


def _check_patched_depth(patched: Any) -> None:
    """422 when a JSON patch made the object nest deeper than kext decodes (kube: the patched
    JSON fails to decode, NewInvalid on field "patch")."""
    try:
        nesting.check_object_depth(patched)
    except ValueError as exc:
        raise errors.invalid("", "", "", [
            errors.field_invalid("patch", "the patched object", str(exc))]) from None


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
        document = decode_json(request.body) if request.body else None
    except BodyDecodeError as exc:
        raise errors.bad_request(f"error decoding patch: {exc}") from None
    if content_type == JSON_PATCH:
        compiled = _compile_json_patch(document)
    elif not isinstance(document, dict):
        raise errors.bad_request("the merge patch must be a JSON object")

    async def apply(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            raise errors.not_found(scope.group, scope.resource, scope.name)
        if content_type == JSON_PATCH:
            try:
                patched = compiled.apply(current, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise _patch_does_not_apply(str(exc)) from None
            _check_patched_depth(patched)
        else:
            patched = merge_patch(current, document)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        return patched

    result = await scope.store.update(ctx, scope.name, scope.version.name, apply, admission)
    obj = transform.to_object(result.object, target, scope, request)
    return object_response(200, obj, target, result.warnings)
