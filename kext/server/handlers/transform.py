"""Turn an object or list into the representation the client negotiated: itself, a
meta.k8s.io Table (printer columns) or PartialObjectMetadata(List)."""

from __future__ import annotations

from typing import Any

from kext.api.table import (
    parse_include_object,
    partial_object_metadata,
    partial_object_metadata_list,
    table_convertor,
)
from kext.server.handlers.scope import Scope
from kext.server.negotiation import Representation, Target
from kext.server.request import APIRequest

Object = dict[str, Any]


def to_object(obj: Object, target: Target, scope: Scope, request: APIRequest) -> Object:
    """One object as the target asks (a get, a write's answer, a watch event)."""
    if target.representation is Representation.OBJECT:
        return obj
    if target.representation is Representation.PARTIAL_OBJECT_METADATA:
        return partial_object_metadata(obj, target.meta_version)
    return table_convertor(scope.version).table(
        [obj],
        include_object=parse_include_object(request.param("includeObject")),
        meta_version=target.meta_version,
    )


def to_list(listed: Object, target: Target, scope: Scope, request: APIRequest) -> Object:
    """A list as the target asks, keeping its resourceVersion and continue token."""
    if target.representation is Representation.OBJECT:
        return listed
    meta = listed["metadata"]
    paging = {
        "resource_version": meta.get("resourceVersion", ""),
        "continue_token": meta.get("continue", ""),
        "remaining_item_count": meta.get("remainingItemCount"),
        "meta_version": target.meta_version,
    }
    if target.representation is Representation.PARTIAL_OBJECT_METADATA:
        return partial_object_metadata_list(listed["items"], **paging)
    return table_convertor(scope.version).table(
        listed["items"],
        include_object=parse_include_object(request.param("includeObject")),
        **paging,
    )
