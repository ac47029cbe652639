"""The AdmissionReview admission.k8s.io/v1 of a webhook call (cf. apiserver's
webhook/request/admissionreview.go): the request kext sends, the checks of the response it
gets back, and a denial turned into a Status (webhook/errors ToStatusErr)."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from kext.admission.attributes import Attributes, GroupVersionKind, GroupVersionResource
from kext.admission.webhook.definition import Invocation
from kext.api import errors
from kext.api.errors import Cause

Object = dict[str, Any]

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
JSON_PATCH = "JSONPatch"


class InvalidResponse(Exception):
    """The webhook's answer is not a valid AdmissionReview response (kube's words)."""


def admission_review(invocation: Invocation, attributes: Attributes, obj: Object | None,
                     old: Object | None, uid: str | None = None) -> Object:
    """The AdmissionReview request: kind and resource as the webhook matched them, the
    request's own as requestKind and requestResource; obj and old in the matched version."""
    request = review_request(invocation, attributes, uid or str(uuid.uuid4()))
    dry_run, options = request.pop("dryRun"), request.pop("options")
    request.update({"object": obj, "oldObject": old, "dryRun": dry_run, "options": options})
    return {"apiVersion": API_VERSION, "kind": KIND, "request": request}


def review_request(invocation: Invocation, attributes: Attributes, uid: str = "") -> Object:
    """The request of an AdmissionReview without its objects (what matchConditions see as
    `request`); uid left out when empty."""
    return admission_request(attributes, invocation.resource, invocation.kind, uid)


def admission_request(attributes: Attributes, resource: GroupVersionResource,
                      kind: GroupVersionKind, uid: str = "") -> Object:
    """An AdmissionReview's request without its objects, for a request matched as resource
    and kind (cf. cel.CreateAdmissionRequest: what admission CEL sees as `request`)."""
    user = attributes.user
    user_info: Object = {}
    if user is not None:
        user_info["username"] = user.name
        if user.uid:
            user_info["uid"] = user.uid
        if user.groups:
            user_info["groups"] = list(user.groups)
        if user.extra:
            user_info["extra"] = {k: list(v) for k, v in user.extra.items()}
    request: Object = {"uid": uid} if uid else {}
    request["kind"] = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    request["resource"] = {"group": resource.group, "version": resource.version,
                           "resource": resource.resource}
    if attributes.subresource:
        request["subResource"] = attributes.subresource
    request["requestKind"] = {"group": attributes.kind.group, "version": attributes.kind.version,
                              "kind": attributes.kind.kind}
    request["requestResource"] = {"group": attributes.resource.group,
                                  "version": attributes.resource.version,
                                  "resource": attributes.resource.resource}
    if attributes.subresource:
        request["requestSubResource"] = attributes.subresource
    if attributes.name:
        request["name"] = attributes.name
    if attributes.namespace:
        request["namespace"] = attributes.namespace
    request["operation"] = attributes.operation
    request["userInfo"] = user_info
    request["dryRun"] = attributes.dry_run
    request["options"] = attributes.options or None
    return request


@dataclass
class ReviewResponse:
    """What an AdmissionReview response says, checked (cf. request.AdmissionResponse)."""

    allowed: bool
    result: Object | None = None
    patch: list[Any] | None = None  # the decoded JSON patch (mutating webhooks only)
    warnings: list[str] = field(default_factory=list)
    audit_annotations: dict[str, str] = field(default_factory=dict)


def verify_response(uid: str, mutating: bool, review: object) -> ReviewResponse:
    """The checked response of the review sent with uid; InvalidResponse as kube's
    VerifyAdmissionResponse words it. An undecodable patch is InvalidPatch."""
    if not isinstance(review, dict):
        raise InvalidResponse("the response body is not a JSON object")
    response = review.get("response")
    if not isinstance(response, dict):
        raise InvalidResponse("webhook response was absent")
    got_uid = response.get("uid", "")
    if got_uid != uid:
        raise InvalidResponse(f"expected response.uid={errors.go_quote(uid)}, "
                              f"got {errors.go_quote(str(got_uid))}")
    api_version, kind = review.get("apiVersion", ""), review.get("kind", "")
    if (api_version, kind) != (API_VERSION, KIND):
        raise InvalidResponse(f"expected webhook response of {API_VERSION}, Kind={KIND}, got "
                              f"{api_version}, Kind={kind}")
    raw_patch, patch_type = response.get("patch"), response.get("patchType")
    patch = None
    if mutating:
        if raw_patch and patch_type is None:
            raise InvalidResponse("webhook returned response.patch but not response.patchType")
        if not raw_patch and patch_type is not None:
            raise InvalidResponse("webhook returned response.patchType but not response.patch")
        if patch_type is not None and not patch_type:
            raise InvalidResponse(f"webhook returned invalid response.patchType of "
                                  f"{errors.go_quote(str(patch_type))}")
        if raw_patch:
            if patch_type != JSON_PATCH:
                raise UnsupportedPatchType(str(patch_type))
            patch = _decode_patch(raw_patch)
    else:
        if raw_patch:
            raise InvalidResponse("validating webhook may not return response.patch")
        if patch_type is not None:
            raise InvalidResponse("validating webhook may not return response.patchType")
    result = response.get("status")
    warnings = response.get("warnings") or []
    annotations = response.get("auditAnnotations") or {}
    return ReviewResponse(
        allowed=response.get("allowed") is True,
        result=result if isinstance(result, dict) else None,
        patch=patch,
        warnings=[w for w in warnings if isinstance(w, str)] if isinstance(warnings, list) else [],
        audit_annotations={str(k): str(v) for k, v in annotations.items()}
        if isinstance(annotations, dict) else {},
    )


class InvalidPatch(Exception):
    """The patch of a response does not decode (kube: an error calling the webhook)."""


class UnsupportedPatchType(Exception):
    """A patch type other than JSONPatch."""


def _decode_patch(raw: object) -> list[Any]:
    try:
        if not isinstance(raw, str):
            raise ValueError("patch is not a base64 string")
        patch = orjson.loads(base64.b64decode(raw, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise InvalidPatch(str(exc)) from None
    if not isinstance(patch, list):
        raise InvalidPatch("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    return patch


def denial_status(webhook_name: str, result: Object | None) -> errors.StatusError:
    """A webhook's denial as the client sees it (cf. webhook/errors ToStatusErr): the status
    it returned with its code (below 400 becomes 400), reason and details, and the message
    `admission webhook "<name>" denied the request: <message>`."""
    result = result or {}
    denied_by = f"admission webhook {errors.go_quote(webhook_name)} denied the request"
    code = result.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code < 400:
        code = 400
    reason = result.get("reason") if isinstance(result.get("reason"), str) else ""
    message = result.get("message") if isinstance(result.get("message"), str) else ""
    if message:
        text = f"{denied_by}: {message}"
    elif reason:
        text = f"{denied_by}: {reason}"
    else:
        text = f"{denied_by} without explanation"
    raw_details = result.get("details")
    details: Object = raw_details if isinstance(raw_details, dict) else {}
    causes = [
        Cause(str(c.get("reason", "")), str(c.get("message", "")), str(c.get("field", "")))
        for c in details.get("causes") or () if isinstance(c, dict)
    ]
    return errors.StatusError(
        code, str(reason), text, name=str(details.get("name", "")),
        group=str(details.get("group", "")), kind=str(details.get("kind", "")), causes=causes,
        retry_after_seconds=int(details.get("retryAfterSeconds") or 0)
        if isinstance(details.get("retryAfterSeconds"), int) else 0,
    )
