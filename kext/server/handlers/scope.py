"""What every resource handler needs: the store, version and admission chain a request
addresses, the request's context for the store, and the query parameters shared by several
verbs, parsed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kext.admission.attributes import (
    Attributes,
    GroupVersionKind,
    GroupVersionResource,
    Operation,
    request_attributes,
)
from kext.admission.chain import Chain
from kext.api import errors
from kext.api.resource import Version
from kext.api.selectors import escape_field_value, parse_field_selector, parse_label_selector
from kext.registry.rest import RequestContext, Warnings, options_object
from kext.registry.store import (
    DeleteOptions,
    ListOptions,
    Preconditions,
    Selection,
    Store,
)
from kext.server import options
from kext.server.options import default_manager, validate_field_manager
from kext.server.request import APIRequest

FIELD_VALIDATION = ("Strict", "Warn", "Ignore")


def parse_resource_version(value: str) -> str:
    """A resourceVersion query value: "" or an unsigned 64-bit integer (400 otherwise, in
    kube's words: options.parse_resource_version)."""
    options.parse_resource_version(value)
    return value


def timeout_seconds(request: APIRequest) -> int | None:
    """The timeoutSeconds parameter (ListOptions.TimeoutSeconds, an *int64 read from the
    first value; 400 when it is not one), None when absent."""
    raw = request.query.get("timeoutSeconds")
    return options.parse_int64(raw[0]) if raw else None


@dataclass(frozen=True)
class Scope:
    """The resource a request addresses, the admission chain its writes pass, and what
    admission adds to the request: warnings (sent as `Warning` headers, with any answer) and
    audit annotations."""

    store: Store
    version: Version
    namespace: str
    name: str
    subresource: str
    chain: Chain
    warnings: Warnings = field(default_factory=Warnings)
    audit_annotations: dict[str, str] = field(default_factory=dict)

    @property
    def group(self) -> str:
        return self.store.group

    @property
    def resource(self) -> str:
        return self.store.resource

    def attributes(self, ctx: RequestContext, operation: Operation,
                   name: str = "") -> Attributes:
        """The admission attributes of a request to this resource, before the store
        supplies the objects."""
        kind = GroupVersionKind(self.group, self.version.name, self.store.kind)
        resource = GroupVersionResource(self.group, self.version.name, self.resource)
        return request_attributes(ctx, operation, kind, resource, name)


def write_context(request: APIRequest, scope: Scope, options_kind: str = "CreateOptions",
                  force: bool | None = None) -> RequestContext:
    """The store's context of a write: the user, namespace and subresource, and dryRun,
    fieldValidation and fieldManager (422 on options_kind when invalid). The manager
    defaults to the User-Agent's program name, as kube-apiserver records it in
    managedFields; the options object keeps what the client sent (force for a patch)."""
    causes: list[errors.Cause] = []
    dry_run = _dry_run(request.query.get("dryRun", []), causes)
    validation = request.param("fieldValidation", "Warn") or "Warn"
    if validation not in FIELD_VALIDATION:
        causes.append(errors.field_not_supported("fieldValidation", validation,
                                                 list(FIELD_VALIDATION)))
    manager = request.param("fieldManager")
    if manager:
        causes.extend(validate_field_manager(manager))
    if causes:  # as kube's Validate*Options: 422 on the options kind
        raise errors.invalid("meta.k8s.io", options_kind, "", causes)
    options = options_object(
        options_kind, dryRun=request.query.get("dryRun"), fieldManager=manager,
        fieldValidation=request.param("fieldValidation"), force=force,
    )
    return RequestContext(
        user=request.user, namespace=scope.namespace, subresource=scope.subresource,
        dry_run=dry_run, field_manager=manager or default_manager(request.header("user-agent")),
        field_validation=validation, options=options, warnings=scope.warnings,
        audit_annotations=scope.audit_annotations,
    )


def _dry_run(values: list[str], causes: list[errors.Cause]) -> bool:
    for value in values:
        if value != "All":
            causes.append(errors.field_not_supported("dryRun", value, ["All"]))
    return bool(values)


def selection(request: APIRequest, scope: Scope, name: str = "") -> Selection:
    """The label and field selectors of a list, watch or deletecollection (400 when a field
    is not one the resource can be selected by). A name (a watch of one object) selects
    `metadata.name`, as kube turns it into a field selector."""
    labels = request.param("labelSelector")
    raw_fields = request.param("fieldSelector")
    fields = parse_field_selector(raw_fields)
    if name:
        wanted = fields.requires_exact_match("metadata.name")
        if wanted is not None and wanted != name:
            raise errors.bad_request(
                "fieldSelector metadata.name doesn't match requested name"
            )
        fields = parse_field_selector(
            f"{raw_fields},metadata.name={escape_field_value(name)}" if raw_fields
            else f"metadata.name={escape_field_value(name)}"
        )
    fields.check_supported(scope.version, scope.store.namespaced)
    return Selection(
        parse_label_selector(labels) if labels else None,
        None if fields.empty else fields,
    )


def list_options(request: APIRequest) -> ListOptions:
    """The ListOptions of a list (or deletecollection): its numbers parsed with kube's
    bounds (400), then kube's ValidateListOptions rules (422 on ListOptions)."""
    limit_raw = request.query.get("limit")
    limit = options.parse_int64(limit_raw[0]) if limit_raw else 0
    timeout_seconds(request)  # decoded (and refused when malformed) even though a list
    rv = parse_resource_version(request.param("resourceVersion"))
    match = request.param("resourceVersionMatch")
    continue_token = request.param("continue")
    # kube's ValidateListOptions: each rule a cause of one 422 on ListOptions
    causes: list[errors.Cause] = []
    if match and match not in ("Exact", "NotOlderThan"):
        causes.append(errors.field_not_supported("resourceVersionMatch", match,
                                                 ["Exact", "NotOlderThan"]))
    if match and not rv:
        causes.append(errors.field_forbidden(
            "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion "
            "is provided"))
    if match and continue_token:
        causes.append(errors.field_forbidden(
            "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is "
            "provided"))
    if continue_token and rv and rv != "0":
        causes.append(errors.field_forbidden(
            "resourceVersion", "specifying resource version is not allowed when using "
            "continue"))
    if match == "Exact" and rv == "0":
        causes.append(errors.field_forbidden(
            "resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for '
            'resourceVersion "0"'))
    if request.param("sendInitialEvents"):
        causes.append(errors.field_forbidden(
            "sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if causes:
        raise errors.invalid("meta.k8s.io", "ListOptions", "", causes)
    return ListOptions(
        resource_version=rv,
        resource_version_match=match,
        limit=max(limit, 0),
        continue_token=continue_token,
    )


def delete_options(request: APIRequest, scope: Scope) -> tuple[RequestContext, DeleteOptions]:
    """The store's context of a delete and its DeleteOptions: from the body when there is
    one, else from the query (as kube's DeleteResource reads them, never both). A field of
    the wrong type is 400 in encoding/json's words, as kube's decoder answers."""
    if request.body:
        decoded = request.json_body()
        if not isinstance(decoded, dict):
            raise errors.bad_request(_unmarshal_error(decoded, "", "v1.DeleteOptions"))
        body = _typed_delete_options(decoded)
        dry_run_values = body.get("dryRun") or []
        sent_policy = body.get("propagationPolicy") or ""
        orphan = body.get("orphanDependents")
        grace_seconds = body.get("gracePeriodSeconds")
        raw = body.get("preconditions") or {}
    else:
        dry_run_values = request.query.get("dryRun") or []
        sent_policy = request.param("propagationPolicy")
        orphan_raw = request.query.get("orphanDependents")
        # Convert_Slice_string_To_Pointer_bool: only "0" and "false" are false
        orphan = None if not orphan_raw else orphan_raw[0] not in ("0", "false", "False")
        grace_raw = request.query.get("gracePeriodSeconds")
        grace_seconds = options.parse_int64(grace_raw[0]) if grace_raw else None
        raw = {}
    causes: list[errors.Cause] = []
    dry_run = _dry_run(list(dry_run_values), causes)
    if causes:
        raise errors.invalid("meta.k8s.io", "DeleteOptions", "", causes)
    policy = sent_policy
    if not policy and orphan is not None:
        policy = "Orphan" if orphan else "Background"
    preconditions = None
    if raw.get("uid") or raw.get("resourceVersion"):
        # an empty value is no precondition
        preconditions = Preconditions(raw.get("uid") or None, raw.get("resourceVersion") or None)
    options_sent = options_object(
        "DeleteOptions", gracePeriodSeconds=grace_seconds,
        preconditions={k: v for k, v in raw.items() if k in ("uid", "resourceVersion") and v}
        or None,
        orphanDependents=orphan, propagationPolicy=sent_policy or None,
        dryRun=list(dry_run_values) or None,
    )
    ctx = RequestContext(user=request.user, namespace=scope.namespace,
                         subresource=scope.subresource, dry_run=dry_run, options=options_sent,
                         warnings=scope.warnings, audit_annotations=scope.audit_annotations)
    return ctx, DeleteOptions(
        preconditions=preconditions,
        propagation_policy=str(policy),
        grace_period_seconds=grace_seconds,
    )


# DeleteOptions' fields as meta/v1 declares them: (JSON type, Go type named in errors)
_DELETE_OPTION_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "kind": (str, "string"),
    "apiVersion": (str, "string"),
    "gracePeriodSeconds": (int, "int64"),
    "preconditions": (dict, "v1.Preconditions"),
    "orphanDependents": (bool, "bool"),
    "propagationPolicy": (str, "v1.DeletionPropagation"),
    "dryRun": (list, "[]string"),
    "ignoreStoreReadErrorWithClusterBreakingPotential": (bool, "bool"),
}
_PRECONDITION_FIELDS = {"uid": "types.UID", "resourceVersion": "string"}


def _typed_delete_options(body: dict[str, Any]) -> dict[str, Any]:
    """body, when each DeleteOptions field it sets has its declared type (null is unset);
    StatusError 400 naming the first that does not, as json.Unmarshal would."""
    for name, (wanted, go_type) in _DELETE_OPTION_FIELDS.items():
        value = body.get(name)
        if value is None:
            continue
        ok = isinstance(value, wanted) and not (wanted is int and isinstance(value, bool))
        if wanted is int and ok and not -(2**63) <= value < 2**63:
            ok = False
        if not ok:
            raise errors.bad_request(_unmarshal_error(value, f"DeleteOptions.{name}", go_type))
        if name == "dryRun":
            for item in value:
                if not isinstance(item, str):
                    raise errors.bad_request(
                        _unmarshal_error(item, "DeleteOptions.dryRun", "string"))
        if name == "preconditions":
            for field, field_type in _PRECONDITION_FIELDS.items():
                item = value.get(field)
                if item is not None and not isinstance(item, str):
                    raise errors.bad_request(_unmarshal_error(
                        item, f"DeleteOptions.preconditions.{field}", field_type))
    kind = body.get("kind")
    if kind and kind != "DeleteOptions":
        raise errors.bad_request("decoded object cannot be converted to DeleteOptions")
    return body


def _unmarshal_error(value: Any, field: str, go_type: str) -> str:
    """encoding/json's UnmarshalTypeError text for value landing in a field of go_type."""
    if isinstance(value, bool):
        what = "bool"
    elif isinstance(value, (int, float)):
        what = f"number {errors.go_value(value)}"
    elif isinstance(value, str):
        what = "string"
    elif isinstance(value, list):
        what = "array"
    else:
        what = "object"
    where = f"Go struct field {field}" if field else "Go value"
    return f"json: cannot unmarshal {what} into {where} of type {go_type}"
