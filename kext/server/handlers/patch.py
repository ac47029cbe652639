"""patch: JSON patch and JSON merge patch applied to the current object inside the
guaranteed update, so a concurrent write re-applies the patch (cf. handlers/patch.go).
Strategic merge patch answers 415 as it does for CustomResources."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
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

Object = dict[str, Any]
# Applies a JSON or merge patch to the current object, giving the patched one.
Patcher = Callable[[Object], Object]

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


def patch_type(request: APIRequest) -> str:
    """The request's patch type; 415 for strategic merge patch (as for CustomResources) and
    anything else unknown."""
    content_type = request.header("content-type").split(";")[0].strip()
    if content_type not in (JSON_PATCH, MERGE_PATCH, APPLY_PATCH):
        raise errors.unsupported_media_type((JSON_PATCH, MERGE_PATCH, APPLY_PATCH))
    return content_type


def patch_force(request: APIRequest, content_type: str) -> bool | None:
    """The `force` parameter (None when absent), 422 on PatchOptions when the parameters do
    not go together (force only for apply, apply needs a fieldManager)."""
    force_raw = request.query.get("force")
    force = force_raw[-1].lower() == "true" if force_raw else None
    causes = patch_options_causes(content_type == APPLY_PATCH, request.param("fieldManager"),
                                  force)
    if causes:
        raise errors.invalid("meta.k8s.io", "PatchOptions", "", causes)
    return force


def patcher(request: APIRequest, content_type: str) -> Patcher:
    """How a JSON patch or merge patch body changes the current object (400 when the body
    is no such patch); the patched object is a new one, the current one is left as it was.
    A JSON patch that does not apply is 422, in kube's words followed by the json-patch
    library's (evanphx/json-patch, as kube-apiserver uses it)."""
    try:
        document = decode_json(request.body) if request.body else None
    except BodyDecodeError as exc:
        raise errors.bad_request(f"error decoding patch: {exc}") from None
    if content_type == JSON_PATCH:
        compiled = _compile_json_patch(document)
        assert isinstance(document, list)  # _compile_json_patch refused anything else
        operations = document
    elif not isinstance(document, dict):
        raise errors.bad_request("the merge patch must be a JSON object")

    def apply(current: Object) -> Object:
        if content_type == JSON_PATCH:
            try:
                patched = compiled.apply(current, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
                raise _patch_does_not_apply(_json_patch_failure(operations, current)) from None
            _check_patched_depth(patched)
        else:
            patched = merge_patch(current, document)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        return patched

    return apply


def _json_patch_failure(operations: list[Any], doc: Any) -> str:
    """Why a JSON patch does not apply to doc, as evanphx/json-patch (v4) words it: the
    operations are replayed one by one to find the one that fails."""
    for op in operations:
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=False)
        except jsonpatch.JsonPatchTestFailed:
            path = op.get("path", "")
            if _resolve_parent(doc, path) is None:
                return f"test operation does not apply: is missing path: {path}: missing value"
            return f"testing value {path} failed: test failed"
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException):
            return _operation_failure(op, doc)
    return "the patch does not apply"


def _operation_failure(op: dict[str, Any], doc: Any) -> str:
    kind, path, source = op.get("op", ""), op.get("path", ""), op.get("from", "")
    if kind in ("move", "copy"):
        if _resolve_parent(doc, source) is None or not _has(doc, source):
            return f"{kind} operation does not apply: doc is missing from path: {source}: " \
                   "missing value"
        return f"{kind} operation does not apply: doc is missing destination path: {path}: " \
               "missing value"
    parent = _resolve_parent(doc, path)
    if kind in ("add", "remove") and parent is None:
        return f'{kind} operation does not apply: doc is missing path: "{path}": missing value'
    if kind == "replace":
        where = "path" if parent is None else "key"
        return f"replace operation does not apply: doc is missing {where}: {path}: missing value"
    key = _unescape(path.rsplit("/", 1)[-1])
    if isinstance(parent, list):
        return f"error in {kind} for path: '{path}': Unable to access invalid index: {key}: " \
               "invalid index referenced"
    return f"error in remove for path: '{path}': Unable to remove nonexistent key: {key}: " \
           "missing value"


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _resolve_parent(doc: Any, path: str) -> Any:
    """The container a JSON pointer's last token is in, or None when it is not there."""
    if not path.startswith("/"):
        return None
    node = doc
    for token in path[1:].split("/")[:-1]:
        key = _unescape(token)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node if isinstance(node, dict | list) else None


def _has(doc: Any, path: str) -> bool:
    parent = _resolve_parent(doc, path)
    key = _unescape(path.rsplit("/", 1)[-1])
    if isinstance(parent, dict):
        return key in parent
    return isinstance(parent, list) and key.isdigit() and int(key) < len(parent)


async def patch(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    content_type = patch_type(request)
    force = patch_force(request, content_type)
    ctx = write_context(request, scope, "PatchOptions", force)
    # a patch that creates (an apply) is admitted as a CREATE, as kube's patcher does
    admission = scope.chain.admission(scope.attributes(ctx, UPDATE, scope.name))
    if content_type == APPLY_PATCH:
        applied = request.json_body()
        result = await scope.store.apply(ctx, scope.name, scope.version.name, applied,
                                         bool(force), admission)
        obj = transform.to_object(result.object, target, scope, request)
        return object_response(201 if result.created else 200, obj, target, result.warnings)
    patch_document = patcher(request, content_type)

    async def apply(current: dict[str, Any] | None) -> dict[str, Any]:
        if current is None:
            raise errors.not_found(scope.group, scope.resource, scope.name)
        return patch_document(current)

    result = await scope.store.update(ctx, scope.name, scope.version.name, apply, admission)
    obj = transform.to_object(result.object, target, scope, request)
    return object_response(200, obj, target, result.warnings)
