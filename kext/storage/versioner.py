"""How objects are stored and versioned (cf. k8s.io/apiserver pkg/storage
APIObjectVersioner): a stored value is the object's JSON without `metadata.resourceVersion`;
an object read back carries the revision it was last written at as its resourceVersion.

Every storage.Interface implementation (etcd's, the watch cache, the in-memory one of the
tests) uses these, so an object means the same thing whichever answered."""

from __future__ import annotations

import orjson

from kext.storage.errors import CorruptObjectError, InvalidObjectError
from kext.storage.interface import Object


def encode_object(key: str, obj: Object) -> bytes:
    """The stored value of obj (pass it through without_resource_version first).
    CorruptObjectError when obj cannot be JSON-encoded."""
    try:
        return orjson.dumps(obj)
    except TypeError as exc:
        raise CorruptObjectError(key, f"cannot encode the object for {key}: {exc}") from None


def decode_object(key: str, value: bytes, revision: int) -> Object:
    """The object stored as value at key, with metadata.resourceVersion = revision (a new
    object on every call). CorruptObjectError when value is not a JSON object."""
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise CorruptObjectError(key, f"cannot decode the object at {key}: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptObjectError(key, f"the value at {key} is not a JSON object")
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta["resourceVersion"] = str(revision)
    else:
        obj["metadata"] = {"resourceVersion": str(revision)}
    return obj


def with_resource_version(obj: Object, revision: int) -> Object:
    """A shallow copy of obj with metadata.resourceVersion = revision (obj is not modified)."""
    meta = obj.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["resourceVersion"] = str(revision)
    return {**obj, "metadata": meta}


def without_resource_version(obj: Object) -> Object:
    """obj as it is stored: without metadata.resourceVersion (a shallow copy when it had one,
    obj itself otherwise)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        meta = dict(meta)
        del meta["resourceVersion"]
        return {**obj, "metadata": meta}
    return obj


def parse_resource_version(key: str, resource_version: str) -> int:
    """The revision a resourceVersion names; InvalidObjectError unless a non-negative integer."""
    try:
        revision = int(resource_version)
    except ValueError:
        revision = -1
    if revision < 0:
        raise InvalidObjectError(key, f"invalid resource version: {resource_version!r}")
    return revision
