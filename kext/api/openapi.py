"""OpenAPI v2 and v3 documents, built once from the declared resources.

Follows apiextensions-apiserver's CRD builder (`pkg/controller/openapi/builder`): each served
version of a resource gets a `<reversed group>.<version>.<Kind>` definition (the declared
schema made structural, with `apiVersion`, `kind` and a `metadata` reference to ObjectMeta added)
and a `...<ListKind>` definition, both tagged with `x-kubernetes-group-version-kind`, plus the
REST paths with kube's operationIds, parameters and `x-kubernetes-action`.

- `/openapi/v2` is one swagger 2.0 document for every resource. Schemas go through kube's "v2
  conversion" (`ToStructuralOpenAPIV2`): no allOf/oneOf/anyOf/not, nullable fields lose their
  type, preserve-unknown-fields nodes lose their properties, and defaults are pruned, as kube
  prunes them before serving v2.
- `/openapi/v3` is an index of `apis/<group>/<version>` documents, each self-contained
  (`components.schemas`, `#/components/schemas/...` refs) and addressed by a content hash.

The `x-kubernetes-*` list/map extensions are kept in both so `kubectl explain` and server-side
apply tooling see the declared list and map semantics. Only JSON is produced: kube also serves
both as protobuf, which kext answers with 406 (see `accepts_json`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kext.api.accept import JSON, negotiate_media_type
from kext.api.discovery import EncodedDocument, encode, sort_versions
from kext.api.resource import ResourceDefinition, Version

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
OBJECT_META = META + "ObjectMeta"
LIST_META = META + "ListMeta"
STATUS = META + "Status"
DELETE_OPTIONS = META + "DeleteOptions"
PATCH = META + "Patch"
RAW_EXTENSION = "io.k8s.apimachinery.pkg.runtime.RawExtension"
AUTOSCALING = "io.k8s.api.autoscaling.v1."
SCALE = AUTOSCALING + "Scale"

V2_PREFIX = "#/definitions/"
V3_PREFIX = "#/components/schemas/"

PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
BODY_TYPES = ("application/json", "application/yaml")

_CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "convert recognized schemas to the latest internal value and may reject unrecognized "
    f"values. More info: {_CONVENTIONS}#resources"
)
KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers "
    "may infer this from the endpoint the client submits requests to. Cannot be updated. In "
    f"CamelCase. More info: {_CONVENTIONS}#types-kinds"
)
OBJECT_METADATA_DOC = f"Standard object's metadata. More info: {_CONVENTIONS}#metadata"
LIST_METADATA_DOC = f"Standard list metadata. More info: {_CONVENTIONS}#types-kinds"


def definition_name(group: str, version: str, kind: str) -> str:
    """The definition name kube gives a CRD kind: `io.kext.example.v1alpha1.Widget`."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _ref(name: str, v2: bool) -> str:
    return (V2_PREFIX if v2 else V3_PREFIX) + name.replace("~", "~0").replace("/", "~1")


def _ref_property(name: str, description: str, v2: bool) -> dict[str, Any]:
    """A property pointing at a definition, in the form kube's generated meta types use.

    OpenAPI 3.0 ignores siblings of `$ref`, so v3 wraps the reference in `allOf`.
    """
    if v2:
        return {"$ref": _ref(name, True), "description": description}
    return {"allOf": [{"$ref": _ref(name, False)}], "description": description}


# --- schema conversion ----------------------------------------------------------------------

_KEPT_KEYWORDS = frozenset(
    {
        # generic
        "description",
        "type",
        "title",
        "default",
        "nullable",
        # value validation
        "format",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
    }
)
_BOOLEAN_EXTENSIONS = frozenset(
    {
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    }
)
_INT_OR_STRING = ({"type": "integer"}, {"type": "string"})


def structural_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The declared openAPIV3Schema as kube publishes it (structural, then unfolded).

    Keeps the keywords a structural schema holds (types, value validations, junctors,
    properties/items/additionalProperties and the `x-kubernetes-*` extensions) and drops the
    rest (`example`, `externalDocs`, `$ref`, `definitions`, ...). A boolean extension is kept
    only when true. `x-kubernetes-int-or-string` is unfolded into
    `anyOf: [{type: integer}, {type: string}]` as `Structural.Unfold` does.
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _KEPT_KEYWORDS:
            out[key] = copy.deepcopy(value)
        elif key in _BOOLEAN_EXTENSIONS:
            if value is True:
                out[key] = True
        elif key.startswith("x-kubernetes-"):
            if value not in (None, [], {}):
                out[key] = copy.deepcopy(value)
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {name: structural_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = _map_schemas(value, structural_schema)
        elif key == "additionalProperties":
            out[key] = value if isinstance(value, bool) else structural_schema(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [structural_schema(sub) for sub in value]
        elif key == "not" and isinstance(value, Mapping):
            out[key] = structural_schema(value)
    if out.get("x-kubernetes-int-or-string") is True:
        _unfold_int_or_string(out)
    return out


def _map_schemas(value: Any, fn: Callable[[Mapping[str, Any]], dict[str, Any]]) -> Any:
    if isinstance(value, Mapping):
        return fn(value)
    if isinstance(value, list):
        return [fn(v) for v in value]
    return value


def _is_int_or_string_anyof(s: Mapping[str, Any]) -> bool:
    any_of = s.get("anyOf")
    return isinstance(any_of, list) and [dict(x) for x in any_of] == list(_INT_OR_STRING)


def _unfold_int_or_string(s: dict[str, Any]) -> None:
    all_of = s.get("allOf")
    if _is_int_or_string_anyof(s) or (all_of and _is_int_or_string_anyof(all_of[0])):
        return
    pattern = [dict(x) for x in _INT_OR_STRING]
    if "anyOf" not in s:
        s["anyOf"] = pattern
    else:
        s["allOf"] = [{"anyOf": pattern}, *s.get("allOf", [])]


def to_v2_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Kube's v2 conversion of a structural schema (`ToStructuralOpenAPIV2`).

    Swagger 2.0 and kubectl's v2 models cannot hold junctors, nullable, or properties under
    preserve-unknown-fields: allOf/oneOf/anyOf/not go; a nullable node loses type, items and
    properties (and leaves its parent's `required`); a preserve-unknown-fields node loses items
    and properties and an `object` type; an array left without items loses its type.
    """
    s = dict(schema)
    for junctor in ("allOf", "oneOf", "anyOf", "not"):
        s.pop(junctor, None)
    if s.pop("nullable", False):
        for key in ("type", "items", "properties"):
            s.pop(key, None)
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    if preserve:
        s.pop("items", None)
        s.pop("properties", None)
    if s.get("type") == "array" and "items" not in s:
        s.pop("type")
    if preserve and s.get("type") == "object":
        s.pop("type")

    properties = s.get("properties")
    if isinstance(properties, Mapping):
        nullable = {name for name, sub in properties.items() if sub.get("nullable")}
        if nullable and "required" in s:
            s["required"] = [r for r in s["required"] if r not in nullable]
        s["properties"] = {name: to_v2_schema(sub) for name, sub in properties.items()}
    additional = s.get("additionalProperties")
    if isinstance(additional, Mapping):
        if additional.get("nullable"):
            s.pop("required", None)
        s["additionalProperties"] = to_v2_schema(additional)
    if "items" in s:
        s["items"] = _map_schemas(s["items"], to_v2_schema)
    if s.get("required") == []:
        del s["required"]
    return s


def prune_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema without `default` anywhere (kube prunes them from the v2 document)."""
    s = {k: v for k, v in schema.items() if k != "default"}
    if isinstance(s.get("properties"), Mapping):
        s["properties"] = {name: prune_defaults(sub) for name, sub in s["properties"].items()}
    if "items" in s:
        s["items"] = _map_schemas(s["items"], prune_defaults)
    if isinstance(s.get("additionalProperties"), Mapping):
        s["additionalProperties"] = prune_defaults(s["additionalProperties"])
    for junctor in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(junctor), list):
            s[junctor] = [prune_defaults(sub) for sub in s[junctor]]
    if isinstance(s.get("not"), Mapping):
        s["not"] = prune_defaults(s["not"])
    return s


def _type_meta(
    description_api: str = API_VERSION_DOC, description_kind: str = KIND_DOC
) -> dict[str, Any]:
    return {
        "apiVersion": {"description": description_api, "type": "string"},
        "kind": {"description": description_kind, "type": "string"},
    }


def _add_embedded_properties(s: dict[str, Any], v2: bool) -> None:
    """Give `x-kubernetes-embedded-resource` objects apiVersion, kind and metadata, as kube."""
    for sub in (s.get("properties") or {}).values():
        _add_embedded_properties(sub, v2)
    items = s.get("items")
    if isinstance(items, dict):
        _add_embedded_properties(items, v2)
    additional = s.get("additionalProperties")
    if isinstance(additional, dict):
        _add_embedded_properties(additional, v2)
    if v2 and s.get("x-kubernetes-preserve-unknown-fields") is True:
        # kubectl's v2 validation would refuse unknown fields next to these properties
        return
    if s.get("x-kubernetes-embedded-resource") is True:
        properties = s.setdefault("properties", {})
        properties.update(
            _type_meta(
                "apiVersion defines the versioned schema of this representation of an object. "
                f"More info: {_CONVENTIONS}#resources",
                "kind is a string value representing the type of this object. In CamelCase. "
                f"More info: {_CONVENTIONS}#types-kinds",
            )
        )
        properties["metadata"] = {"$ref": _ref(OBJECT_META, v2), "description": OBJECT_METADATA_DOC}
        required = s.setdefault("required", [])
        for name in ("kind", "apiVersion"):
            if name not in required:
                required.append(name)


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def kind_schema(rd: ResourceDefinition, version: Version, *, v2: bool) -> dict[str, Any]:
    """The definition of a resource's kind in one version, as the CRD builder makes it."""
    declared = structural_schema(version.schema) if version.schema else None
    if declared is None or (v2 and declared.get("x-kubernetes-preserve-unknown-fields") is True):
        # kubectl would treat any listed property as the only allowed ones
        out: dict[str, Any] = {"type": "object"}
    else:
        out = prune_defaults(to_v2_schema(declared)) if v2 else declared
        properties = out.setdefault("properties", {})
        properties["metadata"] = {"$ref": _ref(OBJECT_META, v2), "description": OBJECT_METADATA_DOC}
        properties.update(_type_meta())
        _add_embedded_properties(out, v2)
    out["x-kubernetes-group-version-kind"] = [_gvk(rd.group, version.name, rd.kind)]
    return out


def list_schema(rd: ResourceDefinition, version: Version, *, v2: bool) -> dict[str, Any]:
    """The definition of a resource's list kind in one version."""
    item = definition_name(rd.group, version.name, rd.kind)
    return {
        "description": f"{rd.list_kind} is a list of {rd.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            **_type_meta(),
            "items": {
                "description": f"List of {rd.plural}. More info: {_CONVENTIONS}",
                "type": "array",
                "items": {"$ref": _ref(item, v2)},
            },
            "metadata": {"$ref": _ref(LIST_META, v2), "description": LIST_METADATA_DOC},
        },
        "x-kubernetes-group-version-kind": [_gvk(rd.group, version.name, rd.list_kind)],
    }


# --- meta/v1 definitions --------------------------------------------------------------------


def _string(description: str) -> dict[str, Any]:
    return {"description": description, "type": "string"}


def _integer(description: str, fmt: str = "int64") -> dict[str, Any]:
    return {"description": description, "format": fmt, "type": "integer"}


def _boolean(description: str) -> dict[str, Any]:
    return {"description": description, "type": "boolean"}


def _string_map(description: str) -> dict[str, Any]:
    return {
        "additionalProperties": {"type": "string"},
        "description": description,
        "type": "object",
    }


def _array_of(items: dict[str, Any], description: str, **extensions: Any) -> dict[str, Any]:
    return {"description": description, "items": items, "type": "array", **extensions}


def _item_ref(name: str, v2: bool) -> dict[str, Any]:
    return {"$ref": _ref(name, True)} if v2 else {"allOf": [{"$ref": _ref(name, False)}]}


def meta_definitions(*, v2: bool) -> dict[str, dict[str, Any]]:
    """The meta/v1 definitions kext's documents refer to (a trimmed set of kube's)."""
    time_ = META + "Time"
    managed = META + "ManagedFieldsEntry"
    owner = META + "OwnerReference"
    details = META + "StatusDetails"
    cause = META + "StatusCause"
    return {
        time_: {
            "description": "Time is a timestamp in RFC 3339 form, in UTC, to the second.",
            "format": "date-time",
            "type": "string",
        },
        META + "FieldsV1": {
            "description": "FieldsV1 is the set of fields a manager owns, as a trie in JSON: "
            "keys are 'f:<field>', 'v:<value>', 'i:<index>' or 'k:<list-map keys>', and '.' "
            "for the field itself (format defined by sigs.k8s.io/structured-merge-diff).",
            "type": "object",
        },
        managed: {
            "description": "ManagedFieldsEntry records which fields one manager owns, for "
            "server-side apply.",
            "properties": {
                "apiVersion": _string("The group/version the field set is expressed in."),
                "fieldsType": _string('The format of the field set; always "FieldsV1".'),
                "fieldsV1": _ref_property(META + "FieldsV1", "The owned fields.", v2),
                "manager": _string("The name of the workflow managing these fields."),
                "operation": _string("The operation that recorded the entry: Apply or Update."),
                "subresource": _string(
                    "The subresource the fields were set through, empty for the main resource."
                ),
                "time": _ref_property(time_, "When the entry was last changed.", v2),
            },
            "type": "object",
        },
        owner: {
            "description": "OwnerReference identifies an owning object in the same namespace.",
            "properties": {
                "apiVersion": _string("API version of the owner."),
                "blockOwnerDeletion": _boolean(
                    "If true, the owner cannot be deleted from storage before this object is "
                    "removed (foreground deletion)."
                ),
                "controller": _boolean(
                    "If true, this reference points to the managing controller."
                ),
                "kind": _string("Kind of the owner."),
                "name": _string("Name of the owner."),
                "uid": _string("UID of the owner."),
            },
            "required": ["apiVersion", "kind", "name", "uid"],
            "type": "object",
            "x-kubernetes-map-type": "atomic",
        },
        OBJECT_META: {
            "description": "ObjectMeta is metadata that all persisted resources must have.",
            "properties": {
                "annotations": _string_map(
                    "Unstructured key/value data set by tools; not queryable. More info: "
                    "https://kubernetes.io/docs/concepts/overview/working-with-objects/annotations"
                ),
                "creationTimestamp": _ref_property(
                    time_, "When the object was created. Set by the server; read-only.", v2
                ),
                "deletionGracePeriodSeconds": _integer(
                    "Seconds allowed for graceful termination; set with deletionTimestamp."
                ),
                "deletionTimestamp": _ref_property(
                    time_,
                    "When deletion was requested. The object is removed once its finalizers "
                    "are empty. Set by the server; read-only.",
                    v2,
                ),
                "finalizers": _array_of(
                    {"type": "string"},
                    "Entries that must be removed before the object is deleted from storage.",
                    **{"x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
                ),
                "generateName": _string(
                    "A prefix the server uses to generate a unique name when name is empty."
                ),
                "generation": _integer(
                    "A sequence number of the desired state (spec). Set by the server; read-only."
                ),
                "labels": _string_map(
                    "Key/value pairs to organize and select objects. More info: "
                    "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels"
                ),
                "managedFields": _array_of(
                    _item_ref(managed, v2),
                    "Which manager owns which fields, maintained by server-side apply.",
                    **{"x-kubernetes-list-type": "atomic"},
                ),
                "name": _string(
                    "Name, unique within a namespace. Required on create unless generateName "
                    "is set. Cannot be updated."
                ),
                "namespace": _string(
                    "The namespace the object lives in; empty for cluster-scoped objects. "
                    "Cannot be updated."
                ),
                "ownerReferences": _array_of(
                    _item_ref(owner, v2),
                    "Objects this object depends on.",
                    **{
                        "x-kubernetes-list-map-keys": ["uid"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "uid",
                        "x-kubernetes-patch-strategy": "merge",
                    },
                ),
                "resourceVersion": _string(
                    "An opaque value that changes whenever the object changes; used for "
                    "optimistic concurrency and watches. Set by the server; read-only."
                ),
                "selfLink": _string("Deprecated: no longer set by the server."),
                "uid": _string(
                    "Unique identifier in time and space. Set by the server; read-only."
                ),
            },
            "type": "object",
        },
        LIST_META: {
            "description": "ListMeta is the metadata of lists and other synthetic resources.",
            "properties": {
                "continue": _string(
                    "Set when a limit was given and more items exist: pass it back as "
                    "?continue= to get the next page of the same snapshot."
                ),
                "remainingItemCount": _integer(
                    "An estimate of the items not yet returned, when known."
                ),
                "resourceVersion": _string("The resource version the list was read at."),
                "selfLink": _string("Deprecated: no longer set by the server."),
            },
            "type": "object",
        },
        cause: {
            "description": "StatusCause is one reason for an error, often one bad field.",
            "properties": {
                "field": _string("The path of the field at fault, e.g. spec.replicas."),
                "message": _string("A human-readable description of the cause."),
                "reason": _string("A machine-readable cause, e.g. FieldValueInvalid."),
            },
            "type": "object",
        },
        details: {
            "description": "StatusDetails are extra data about a Status error.",
            "properties": {
                "causes": _array_of(
                    _item_ref(cause, v2),
                    "Each cause of the error.",
                    **{"x-kubernetes-list-type": "atomic"},
                ),
                "group": _string("The group of the resource involved."),
                "kind": _string("The kind of the resource involved."),
                "name": _string("The name of the resource involved."),
                "retryAfterSeconds": _integer("Seconds to wait before retrying.", "int32"),
                "uid": _string("The UID of the resource involved."),
            },
            "type": "object",
        },
        STATUS: {
            "description": "Status is the result of an operation that returns no object, and "
            "the body of every error.",
            "properties": {
                **_type_meta(),
                "code": _integer("The HTTP status code.", "int32"),
                "details": _ref_property(details, "Extra data about the error.", v2),
                "message": _string("A human-readable description of the status."),
                "metadata": _ref_property(LIST_META, LIST_METADATA_DOC, v2),
                "reason": _string("A machine-readable reason, e.g. NotFound or Conflict."),
                "status": _string('"Success" or "Failure".'),
            },
            "type": "object",
            "x-kubernetes-group-version-kind": [_gvk("", "v1", "Status")],
        },
        META + "Preconditions": {
            "description": "Preconditions must hold before a delete is carried out.",
            "properties": {
                "resourceVersion": _string("The object's resourceVersion must equal this."),
                "uid": _string("The object's uid must equal this."),
            },
            "type": "object",
        },
        DELETE_OPTIONS: {
            "description": "DeleteOptions may be given when deleting an object.",
            "properties": {
                **_type_meta(),
                "dryRun": _array_of(
                    {"type": "string"},
                    "When present, nothing is persisted. The only value is All.",
                    **{"x-kubernetes-list-type": "atomic"},
                ),
                "gracePeriodSeconds": _integer("Seconds before the object is deleted."),
                "orphanDependents": _boolean("Deprecated: use propagationPolicy."),
                "preconditions": _ref_property(
                    META + "Preconditions", "Must hold, or the delete answers 409 Conflict.", v2
                ),
                "propagationPolicy": _string(
                    "How dependents are garbage collected: Orphan, Background or Foreground."
                ),
            },
            "type": "object",
            "x-kubernetes-group-version-kind": [_gvk("", "v1", "DeleteOptions")],
        },
        PATCH: {
            "description": "Patch is the body of a PATCH request; its form is given by the "
            "Content-Type (JSON patch, merge patch or apply configuration).",
            "type": "object",
        },
        RAW_EXTENSION: {
            "description": "RawExtension holds an embedded object as raw JSON.",
            "type": "object",
        },
        META + "WatchEvent": {
            "description": "WatchEvent is one event of a watch stream.",
            "properties": {
                "object": _ref_property(
                    RAW_EXTENSION,
                    "The object (ADDED, MODIFIED, DELETED), its last state (DELETED), a "
                    "Status (ERROR) or an object carrying only a resourceVersion (BOOKMARK).",
                    v2,
                ),
                "type": _string("ADDED, MODIFIED, DELETED, BOOKMARK or ERROR."),
            },
            "required": ["type", "object"],
            "type": "object",
            "x-kubernetes-group-version-kind": [_gvk("", "v1", "WatchEvent")],
        },
    }


def scale_definitions(*, v2: bool) -> dict[str, dict[str, Any]]:
    """autoscaling/v1 Scale and its parts: what `/scale` reads and writes."""
    spec, status = AUTOSCALING + "ScaleSpec", AUTOSCALING + "ScaleStatus"
    return {
        SCALE: {
            "description": "Scale is the scaling state of a resource, read and written through "
            "its scale subresource.",
            "properties": {
                **_type_meta(),
                "metadata": _ref_property(OBJECT_META, OBJECT_METADATA_DOC, v2),
                "spec": _ref_property(spec, "The desired scale.", v2),
                "status": _ref_property(status, "The observed scale; read-only.", v2),
            },
            "type": "object",
            "x-kubernetes-group-version-kind": [_gvk("autoscaling", "v1", "Scale")],
        },
        spec: {
            "description": "ScaleSpec holds the desired number of replicas.",
            "properties": {
                "replicas": _integer("The desired number of replicas.", "int32"),
            },
            "type": "object",
        },
        status: {
            "description": "ScaleStatus holds the observed number of replicas and the label "
            "selector of what is counted.",
            "properties": {
                "replicas": _integer("The observed number of replicas.", "int32"),
                "selector": _string(
                    "The label selector, in the query-parameter syntax, of the pods (or other "
                    "objects) the replicas count; what a HorizontalPodAutoscaler reads."
                ),
            },
            "required": ["replicas"],
            "type": "object",
        },
    }


# --- paths ----------------------------------------------------------------------------------

# Query parameters of the options kube adds to each action, name -> (type, description).
_PARAMETERS: dict[str, tuple[str, str]] = {
    "allowWatchBookmarks": ("boolean", "Ask for BOOKMARK events on a watch; ignored otherwise."),
    "continue": (
        "string",
        "The continue token of a previous page, to get the next page of the same list. An "
        "expired token answers 410 Expired.",
    ),
    "dryRun": ("string", "When present, nothing is persisted. The only value is All."),
    "fieldManager": ("string", "The name of the actor making the change, for managedFields."),
    "fieldSelector": ("string", "Select objects by fields. Defaults to everything."),
    "fieldValidation": (
        "string",
        "What to do with unknown or duplicate fields in the body: Ignore, Warn (a Warning "
        "header per field) or Strict (an error).",
    ),
    "force": ("boolean", "Apply requests only: take over fields owned by other managers."),
    "gracePeriodSeconds": ("integer", "Seconds before the object is deleted."),
    "labelSelector": ("string", "Select objects by labels. Defaults to everything."),
    "limit": ("integer", "The most items to return; the list then carries a continue token."),
    "orphanDependents": ("boolean", "Deprecated: use propagationPolicy."),
    "propagationPolicy": (
        "string",
        "How dependents are garbage collected: Orphan, Background or Foreground.",
    ),
    "resourceVersion": (
        "string",
        "A constraint on the resource version the request is served from. See "
        "https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions",
    ),
    "resourceVersionMatch": (
        "string",
        "How resourceVersion applies to a list: Exact or NotOlderThan.",
    ),
    "sendInitialEvents": (
        "boolean",
        "With watch=true: start with the current objects, then a BOOKMARK marking the end of them.",
    ),
    "timeoutSeconds": ("integer", "A time limit for the list or watch call."),
    "watch": ("boolean", "Watch for changes instead of listing."),
}
_PRETTY = ("string", "If 'true', the output is pretty printed.")

_GET_OPTIONS = ("resourceVersion",)
_LIST_OPTIONS = (
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
)
_CREATE_OPTIONS = ("dryRun", "fieldManager", "fieldValidation")
_UPDATE_OPTIONS = _CREATE_OPTIONS
_PATCH_OPTIONS = (*_CREATE_OPTIONS, "force")
_DELETE_OPTIONS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")

# The operation verbs kube-apiserver knows; an operationId starts with the shortest matching one.
_OPERATION_VERBS = (
    "get",
    "log",
    "read",
    "replace",
    "patch",
    "delete",
    "deletecollection",
    "watch",
    "connect",
    "proxy",
    "list",
    "create",
)


def _valid_operation_id(s: str, capitalize_first: bool) -> str:
    out = []
    capitalize = capitalize_first
    for i, ch in enumerate(s):
        if ch.isalpha() or ch == "_" or (i and ch.isdigit()):
            out.append(ch.upper() if capitalize else ch)
            capitalize = False
        else:
            capitalize = True
    return "".join(out)


def operation_id_and_tag(operation: str, group: str, version: str) -> tuple[str, str]:
    """kube's operationId and tag for an operation name on /apis/<group>/<version>.

    `listNamespacedWidget` on example.kext.io/v1alpha1 gives
    `listExampleKextIoV1alpha1NamespacedWidget`, tag `exampleKextIo_v1alpha1`.
    """
    prefix = min((v for v in _OPERATION_VERBS if operation.startswith(v)), key=len, default="")
    trimmed = group.removesuffix(".k8s.io")
    operation_id = (
        prefix
        + _valid_operation_id(trimmed, True)
        + _valid_operation_id(version, True)
        + operation[len(prefix) :]
    )
    tag = _valid_operation_id(trimmed, False) + "_" + _valid_operation_id(version, False)
    return operation_id, tag


def _article(noun: str) -> str:
    if noun.endswith("s") and not noun.endswith("ss"):
        return " "
    return " an " if noun[:1].lower() in "aeiou" else " a "


_OPTIONS_BY_ACTION = {
    "get": _GET_OPTIONS,
    "list": _LIST_OPTIONS,
    "deletecollection": _LIST_OPTIONS,
    "put": _UPDATE_OPTIONS,
    "patch": _PATCH_OPTIONS,
    "post": _CREATE_OPTIONS,
    "delete": _DELETE_OPTIONS,
}
_CODES_BY_ACTION = {
    "post": (("200", "OK"), ("201", "Created"), ("202", "Accepted")),
    "put": (("200", "OK"), ("201", "Created")),
    "delete": (("200", "OK"), ("202", "Accepted")),
}


@dataclasses.dataclass(frozen=True)
class _Route:
    """One operation of a path, described the way the CRD builder's `buildRoute` does."""

    method: str  # get, post, put, patch, delete
    action: str  # x-kubernetes-action: list, post, deletecollection, get, put, patch, delete
    operation: str  # operation name before the group/version is woven in
    description: str
    response: str  # definition name of the 200 response
    body: str  # definition name of the request body, "" for none

    @property
    def options(self) -> tuple[str, ...]:
        return _OPTIONS_BY_ACTION[self.action]

    @property
    def codes(self) -> tuple[tuple[str, str], ...]:
        return _CODES_BY_ACTION.get(self.action, (("200", "OK"),))

    @property
    def body_required(self) -> bool:
        return self.action != "delete"


def _route(
    rd: ResourceDefinition, version: Version, method: str, action: str, verb: str, sub: str = ""
) -> _Route:
    """The route for an operation verb (list, create, deletecollection, read, replace, delete,
    patch) on the resource or its subresource `sub`, as the CRD builder's `buildRoute`."""
    kind = rd.kind
    article = {
        "list": " objects of kind ",
        "read": " the specified ",
        "replace": " the specified ",
        "patch": " the specified ",
        "create": _article(kind),
        "delete": _article(kind),
    }.get(verb, "")
    of = f" {sub} of" if sub else ""
    if verb == "patch":
        description = f"partially update{of}{article}{kind}"
    elif verb == "deletecollection":
        description = f"delete collection of{of + ' a' if of else ''} {kind}"
    else:
        description = f"{verb}{of}{article}{kind}"
    namespaced = "Namespaced" if rd.namespaced else ""
    kind_def = SCALE if sub == "scale" else definition_name(rd.group, version.name, kind)
    if action == "list":
        response = definition_name(rd.group, version.name, rd.list_kind)
    elif action in ("delete", "deletecollection"):
        response = STATUS
    else:
        response = kind_def
    body = {"post": kind_def, "put": kind_def, "patch": PATCH, "delete": DELETE_OPTIONS}
    return _Route(
        method,
        action,
        f"{verb}{namespaced}{kind}{sub.title()}",
        description,
        response,
        body.get(action, ""),
    )


def _routes(rd: ResourceDefinition, version: Version) -> dict[str, list[_Route]]:
    """Every path of one resource version and its operations, as the CRD builder lays them out."""
    base = f"/apis/{rd.group}/{version.name}"
    paths: dict[str, list[_Route]] = {}
    if rd.namespaced:
        all_namespaces = _route(rd, version, "get", "list", "list")
        paths[f"{base}/{rd.plural}"] = [
            dataclasses.replace(all_namespaces, operation=f"list{rd.kind}ForAllNamespaces")
        ]
        root = f"{base}/namespaces/{{namespace}}/{rd.plural}"
    else:
        root = f"{base}/{rd.plural}"
    paths[root] = [
        _route(rd, version, "get", "list", "list"),
        _route(rd, version, "post", "post", "create"),
        _route(rd, version, "delete", "deletecollection", "deletecollection"),
    ]
    paths[f"{root}/{{name}}"] = [
        _route(rd, version, "get", "get", "read"),
        _route(rd, version, "put", "put", "replace"),
        _route(rd, version, "delete", "delete", "delete"),
        _route(rd, version, "patch", "patch", "patch"),
    ]
    for sub, declared in (("status", version.status_subresource),
                          ("scale", version.scale is not None)):
        if declared:
            paths[f"{root}/{{name}}/{sub}"] = [
                _route(rd, version, "get", "get", "read", sub),
                _route(rd, version, "put", "put", "replace", sub),
                _route(rd, version, "patch", "patch", "patch", sub),
            ]
    return paths


def _path_parameters(rd: ResourceDefinition, path: str, v2: bool) -> list[dict[str, Any]]:
    params = []
    if "{name}" in path:
        params.append(
            _parameter("name", "path", "string", f"name of the {rd.kind}", v2, required=True)
        )
    if "{namespace}" in path:
        params.append(
            _parameter(
                "namespace",
                "path",
                "string",
                "object name and auth scope, such as for teams and projects",
                v2,
                required=True,
            )
        )
    params.append(_parameter("pretty", "query", *_PRETTY, v2))
    return params


def _parameter(
    name: str, where: str, type_: str, description: str, v2: bool, *, required: bool = False
) -> dict[str, Any]:
    # kube-openapi marks every simple parameter uniqueItems; kept for fidelity
    out: dict[str, Any] = {"name": name, "in": where, "description": description}
    if v2:
        out.update({"type": type_, "uniqueItems": True})
    else:
        out["schema"] = {"type": type_, "uniqueItems": True}
    if required:
        out["required"] = True
    return out


def _operation(rd: ResourceDefinition, version: Version, route: _Route, v2: bool) -> dict[str, Any]:
    operation_id, tag = operation_id_and_tag(route.operation, rd.group, version.name)
    params = [_parameter(name, "query", *_PARAMETERS[name], v2) for name in sorted(route.options)]
    consumes = PATCH_TYPES if route.method == "patch" else BODY_TYPES
    op: dict[str, Any] = {
        "description": route.description,
        "operationId": operation_id,
        "tags": [tag],
    }
    if v2:
        if route.body:
            body: dict[str, Any] = {
                "name": "body",
                "in": "body",
                "schema": {"$ref": _ref(route.body, True)},
            }
            if route.body_required:
                body["required"] = True
            params.insert(0, body)
        op["consumes"] = list(consumes) if route.body else ["*/*"]
        op["produces"] = list(BODY_TYPES)
        op["schemes"] = ["https"]
        responses: dict[str, Any] = {
            code: {"description": text, "schema": {"$ref": _ref(route.response, True)}}
            for code, text in route.codes
        }
    else:
        if route.body:
            schema = {"$ref": _ref(route.body, False)}
            op["requestBody"] = {"content": {t: {"schema": dict(schema)} for t in consumes}}
            if route.body_required:
                op["requestBody"]["required"] = True
        responses = {
            code: {
                "description": text,
                "content": {
                    t: {"schema": {"$ref": _ref(route.response, False)}} for t in BODY_TYPES
                },
            }
            for code, text in route.codes
        }
    responses["401"] = {"description": "Unauthorized"}
    if params:
        op["parameters"] = params
    op["responses"] = responses
    op["x-kubernetes-action"] = route.action
    op["x-kubernetes-group-version-kind"] = _gvk(rd.group, version.name, rd.kind)
    return op


def _resource_paths(rd: ResourceDefinition, version: Version, v2: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, routes in _routes(rd, version).items():
        item: dict[str, Any] = {r.method: _operation(rd, version, r, v2) for r in routes}
        item["parameters"] = _path_parameters(rd, path, v2)
        out[path] = item
    return out


def _resource_definitions(rd: ResourceDefinition, version: Version, v2: bool) -> dict[str, Any]:
    return {
        definition_name(rd.group, version.name, rd.kind): kind_schema(rd, version, v2=v2),
        definition_name(rd.group, version.name, rd.list_kind): list_schema(rd, version, v2=v2),
    }


def _served(resources: Iterable[ResourceDefinition]) -> list[tuple[ResourceDefinition, Version]]:
    return [
        (rd, v)
        for rd in sorted(resources, key=lambda r: (r.group, r.plural))
        for v in rd.served_versions
    ]


INFO = {"title": "kext", "version": "unversioned"}


# --- documents ------------------------------------------------------------------------------


def build_openapi_v2(resources: Sequence[ResourceDefinition]) -> dict[str, Any]:
    """The `/openapi/v2` swagger 2.0 document for every served version of every resource."""
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = meta_definitions(v2=True)
    for rd, v in _served(resources):
        paths.update(_resource_paths(rd, v, True))
        definitions.update(_resource_definitions(rd, v, True))
        if v.scale is not None:
            definitions.update(scale_definitions(v2=True))
    return {"swagger": "2.0", "info": dict(INFO), "paths": paths, "definitions": definitions}


def _by_group_version(
    resources: Sequence[ResourceDefinition],
) -> dict[tuple[str, str], list[tuple[ResourceDefinition, Version]]]:
    """Served resources by (group, version): groups by name, versions by kube priority."""
    by_group: dict[str, dict[str, list[tuple[ResourceDefinition, Version]]]] = {}
    for rd, v in _served(resources):
        by_group.setdefault(rd.group, {}).setdefault(v.name, []).append((rd, v))
    return {(g, v): by_group[g][v] for g in sorted(by_group) for v in sort_versions(by_group[g])}


def _openapi_v3(served: Iterable[tuple[ResourceDefinition, Version]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = meta_definitions(v2=False)
    for rd, v in served:
        paths.update(_resource_paths(rd, v, False))
        schemas.update(_resource_definitions(rd, v, False))
        if v.scale is not None:
            schemas.update(scale_definitions(v2=False))
    return {
        "openapi": "3.0.0",
        "info": dict(INFO),
        "paths": paths,
        "components": {"schemas": schemas},
    }


def v3_path(group: str, version: str) -> str:
    """The key of a group version in the `/openapi/v3` index: `apis/<group>/<version>`."""
    return f"apis/{group}/{version}"


def build_openapi_v3_index(documents: Mapping[str, EncodedDocument]) -> dict[str, Any]:
    """The `/openapi/v3` index: each path with its hashed URL (`?hash=` is the unquoted ETag)."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={doc.hash}"}
            for path, doc in sorted(documents.items())
        }
    }


def accepts_json(accept: str | None) -> bool:
    """Whether an Accept header admits JSON; when it does not, the answer is 406.

    client-go asks `/openapi/v2` for protobuf only; kube-openapi answers 406 to any type it
    does not serve, and kubectl's callers of the v2 document tolerate that error.
    """
    return negotiate_media_type(accept, (JSON,), lambda clause, media_type: True) is not None


class OpenAPIDocuments:
    """Every OpenAPI document of a server, encoded once at start-up.

    `v2` is `/openapi/v2`; `v3_index` is `/openapi/v3`; `v3[path]` is
    `/openapi/v3/<path>` for each `apis/<group>/<version>`.
    """

    def __init__(self, resources: Sequence[ResourceDefinition]) -> None:
        self.v2 = encode(build_openapi_v2(resources), sort_keys=True)
        self.v3: dict[str, EncodedDocument] = {}
        for (group, version), served in _by_group_version(resources).items():
            self.v3[v3_path(group, version)] = encode(_openapi_v3(served), sort_keys=True)
        self.v3_index = encode(build_openapi_v3_index(self.v3), sort_keys=True)
