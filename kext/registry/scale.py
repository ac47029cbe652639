"""The scale subresource of a custom resource (cf. apiextensions-apiserver
pkg/registry/customresource/etcd.go: ScaleREST, scaleFromCustomResource,
scaleUpdatedObjectInfo; and apimachinery's managedfields ScaleHandler).

A resource declaring `subresources.scale` shows, at `/scale`, an autoscaling/v1 Scale made
from three of its fields: `spec.replicas` from specReplicasPath (0 when absent), and
`status.replicas` and `status.selector` from statusReplicasPath and labelSelectorPath (0 and ""
when absent). A write to `/scale` is an update of the object itself in which only the spec
replicas field changes (kext.registry.strategy.ScaleStrategy); the Scale's resourceVersion,
when it has one, is the update's precondition.
"""

from __future__ import annotations

from typing import Any

from kext.api import errors
from kext.api.errors import Cause, field_invalid
from kext.api.resource import ScaleSubresource
from kext.api.schema import Schema
from kext.registry.fieldmanager.fieldpath import Path
from kext.registry.fieldmanager.managedfields import Entry, Managed, decode_object, set_managed

Object = dict[str, Any]

API_VERSION = "autoscaling/v1"
KIND = "Scale"
MAX_INT32 = 2**31 - 1
# what UpdatedObject puts in spec.replicas of the old Scale when the object has none, so an
# update that sets none can be told apart (kube's invalidSpecReplicas)
INVALID_SPEC_REPLICAS = -(2**31)
REPLICAS_IN_SCALE: Path = ("f:spec", "f:replicas")

# The schema of an autoscaling/v1 Scale, for server-side apply through /scale.
SCALE_SCHEMA = Schema({
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {"type": "object", "properties": {
            "replicas": {"type": "integer", "format": "int32"}}},
        "status": {"type": "object", "properties": {
            "replicas": {"type": "integer", "format": "int32"},
            "selector": {"type": "string"}}},
    },
})


class AccessorError(ValueError):
    """A field on a scale path holds the wrong type (unstructured's accessor errors)."""


def _fields(json_path: str) -> list[str]:
    return json_path.removeprefix(".").split(".")


def _go_value(value: Any) -> str:
    if value is None:
        return "<nil>"
    return errors.go_value(value, quote_strings=False)


def nested(obj: Object, json_path: str) -> tuple[bool, Any]:
    """(found, value) at a dot path (unstructured.NestedFieldNoCopy); AccessorError when a
    field on the way is not an object."""
    node: Any = obj
    fields = _fields(json_path)
    for i, key in enumerate(fields):
        if not isinstance(node, dict):
            at = "." + ".".join(fields[:i])
            raise AccessorError(f"{at} accessor error: {_go_value(node)} is of the type "
                                f"{errors.go_type(node)}, expected map[string]interface{{}}")
        if key not in node:
            return False, None
        node = node[key]
    return True, node


def nested_int(obj: Object, json_path: str) -> tuple[bool, int]:
    """unstructured.NestedInt64: (found, value); AccessorError when it is no integer."""
    found, value = nested(obj, json_path)
    if not found:
        return False, 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise AccessorError(f"{json_path} accessor error: {_go_value(value)} is of the type "
                            f"{errors.go_type(value)}, expected int64")
    return True, value


def nested_string(obj: Object, json_path: str) -> tuple[bool, str]:
    """unstructured.NestedString."""
    found, value = nested(obj, json_path)
    if not found:
        return False, ""
    if not isinstance(value, str):
        raise AccessorError(f"{json_path} accessor error: {_go_value(value)} is of the type "
                            f"{errors.go_type(value)}, expected string")
    return True, value


def set_nested(obj: Object, json_path: str, value: Any) -> None:
    """unstructured.SetNestedField: objects created on the way."""
    node = obj
    *parents, last = _fields(json_path)
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def _int32(value: int) -> int:
    """Go's int32() of an int64: wraps around."""
    return (value + 2**31) % 2**32 - 2**31


def scale_from_custom_resource(cr: Object, scale: ScaleSubresource) -> tuple[Object, bool]:
    """The autoscaling/v1 Scale of a custom resource, and whether its spec replicas field
    exists. AccessorError when a scale field holds the wrong type."""
    found, spec_replicas = nested_int(cr, scale.spec_replicas_path)
    _, status_replicas = nested_int(cr, scale.status_replicas_path)
    selector = ""
    if scale.label_selector_path:
        _, selector = nested_string(cr, scale.label_selector_path)
    metadata = cr.get("metadata") or {}
    scale_meta = {key: metadata[key] for key in
                  ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                  if metadata.get(key)}
    spec: Object = {}
    if _int32(spec_replicas):  # Go's omitempty
        spec["replicas"] = _int32(spec_replicas)
    status: Object = {"replicas": _int32(status_replicas)}
    if selector:
        status["selector"] = selector
    return {"kind": KIND, "apiVersion": API_VERSION, "metadata": scale_meta, "spec": spec,
            "status": status}, found


def validate_scale_fields(obj: Object, scale: ScaleSubresource) -> list[Cause]:
    """ValidateScaleSpec and ValidateScaleStatus: the replicas fields are non-negative int32
    values, the selector a string (field paths as the jsonPaths are written, dot first)."""
    causes: list[Cause] = []
    for json_path in (scale.spec_replicas_path, scale.status_replicas_path):
        try:
            _, replicas = nested_int(obj, json_path)
        except AccessorError as exc:
            causes.append(field_invalid(json_path, 0, str(exc)))
            continue
        if replicas < 0:
            causes.append(field_invalid(json_path, replicas, "should be a non-negative integer"))
        elif replicas > MAX_INT32:
            causes.append(field_invalid(json_path, replicas,
                                        f"should be less than or equal to {MAX_INT32}"))
    if scale.label_selector_path:
        try:
            nested_string(obj, scale.label_selector_path)
        except AccessorError as exc:
            causes.append(field_invalid(scale.label_selector_path, "", str(exc)))
    return causes


def spec_replicas(scale_obj: Object) -> int:
    """A Scale's spec.replicas (0 when unset, as a typed Scale decodes it); 400 when it is
    not an integer."""
    spec = scale_obj.get("spec")
    replicas = spec.get("replicas", 0) if isinstance(spec, dict) else 0
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise errors.bad_request(
            "the request body could not be decoded: json: cannot unmarshal "
            f"{errors.go_type(replicas).replace('float64', 'number').replace('int64', 'number')} "
            "into Go struct field ScaleSpec.spec.replicas of type int32")
    return replicas


def check_scale(obj: object) -> Object:
    """The Scale a write brings: 400 when it is no autoscaling/v1 Scale."""
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON or YAML object")
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version not in (None, "", API_VERSION) or kind not in (None, "", KIND):
        if api_version not in (None, "", API_VERSION):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({API_VERSION})")
        raise errors.bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({KIND})")
    # a typed decode defaults what is missing
    obj["apiVersion"], obj["kind"] = API_VERSION, KIND
    if not isinstance(obj.get("metadata", {}), dict):
        raise errors.bad_request("metadata must be an object")
    obj.setdefault("metadata", {})
    return obj


# -- managedFields across the subresource (cf. managedfields.ScaleHandler)


def _path(json_path: str) -> Path:
    return tuple(f"f:{key}" for key in _fields(json_path))


def to_subresource(cr: Object, replicas_paths: dict[str, str]) -> Managed:
    """The Scale's managedFields from the object's: each manager owning the replicas field
    (at its entry's apiVersion's path) owns the Scale's spec.replicas."""
    out: Managed = {}
    for entry in decode_object(cr).values():
        path = replicas_paths.get(entry.api_version)
        if path is None or _path(path) not in entry.fields:
            continue
        scale_entry = Entry(entry.manager, entry.operation, API_VERSION, {REPLICAS_IN_SCALE},
                            entry.time, entry.subresource)
        out[scale_entry.identity] = scale_entry
    return out


def to_parent(cr: Object, scale_obj: Object, replicas_paths: dict[str, str],
              api_version: str) -> None:
    """Set the object's managedFields from the Scale's after a write through /scale: the
    replicas field goes to whoever owns spec.replicas of the Scale, in the object's path and
    api_version; the other fields keep their owners."""
    parent = decode_object(cr)
    scale = decode_object(scale_obj)
    owners = {(e.manager, e.operation, e.subresource) for e in scale.values()
              if REPLICAS_IN_SCALE in e.fields}
    out: Managed = {}
    for identity, entry in parent.items():
        path = replicas_paths.get(entry.api_version)
        if path is None:
            continue  # an entry of a version the resource no longer has
        replicas = _path(path)
        if replicas in entry.fields and (entry.manager, entry.operation,
                                          entry.subresource) not in owners:
            entry.fields = entry.fields - {replicas}
            if not entry.fields:
                continue
        out[identity] = entry
    kept = {(e.manager, e.operation, e.subresource) for e in out.values()}
    for entry in scale.values():
        key = (entry.manager, entry.operation, entry.subresource)
        if REPLICAS_IN_SCALE not in entry.fields or key in kept:
            continue
        new = Entry(entry.manager, entry.operation, api_version,
                    {_path(replicas_paths[api_version])}, entry.time, entry.subresource)
        out[new.identity] = new
    set_managed(cr.setdefault("metadata", {}), out)
