"""The scale subresource: GET, PUT and PATCH (JSON patch, merge patch, apply) of
`<resource>/<name>/scale` as an autoscaling/v1 Scale (cf. apiextensions-apiserver's
serveScale and ScaleREST). The store makes the Scale from the object and writes only its
replicas back; admission sees the request as kube's does, with kind autoscaling/v1 Scale and
subresource "scale"."""

from __future__ import annotations

import dataclasses
from typing import Any

from kext.admission.attributes import UPDATE, Attributes, GroupVersionKind
from kext.api import meta
from kext.api.resource import PrinterColumn, Version
from kext.api.table import (
    CREATION_TIMESTAMP_DESCRIPTION,
    TableConvertor,
    parse_include_object,
    partial_object_metadata,
)
from kext.registry import scale as scales
from kext.registry.fieldmanager import FieldManager
from kext.registry.rest import RequestContext
from kext.server.handlers import patch as patches
from kext.server.handlers.scope import Scope, parse_resource_version, write_context
from kext.server.negotiation import Representation, Target, negotiate
from kext.server.request import APIRequest, Response, object_response

Object = dict[str, Any]

SCALE_KIND = GroupVersionKind("autoscaling", "v1", scales.KIND)

# One for every resource: a Scale has the same fields whatever it scales.
SCALE_FIELD_MANAGER = FieldManager(scales.API_VERSION, scales.KIND, scales.SCALE_SCHEMA)

# A Scale as a Table (`kubectl get --subresource=scale`): kube's scale columns.
SCALE_TABLE = TableConvertor(Version(
    name="v1", served=True, storage=False, schema={}, printer_columns=(
        PrinterColumn("Desired", "integer", ".spec.replicas",
                      "The number of replicas wanted"),
        PrinterColumn("Available", "integer", ".status.replicas",
                      "The number of replicas observed"),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp",
                      CREATION_TIMESTAMP_DESCRIPTION),
    )))


def _rendered(scale: Object, target: Target, request: APIRequest) -> Object:
    """A Scale as the client asked for it: itself, its metadata, or a Table."""
    if target.representation is Representation.OBJECT:
        return scale
    if target.representation is Representation.PARTIAL_OBJECT_METADATA:
        return partial_object_metadata(scale, target.meta_version)
    return SCALE_TABLE.table([scale], meta_version=target.meta_version,
                             include_object=parse_include_object(request.param("includeObject")))


def _attributes(scope: Scope, ctx: RequestContext) -> Attributes:
    return dataclasses.replace(scope.attributes(ctx, UPDATE, scope.name), kind=SCALE_KIND)


async def get(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    rv = parse_resource_version(request.param("resourceVersion"))
    scale = await scope.store.get_scale(scope.namespace, scope.name, scope.version.name, rv)
    return object_response(200, _rendered(scale, target, request), target)


async def update(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    ctx = write_context(request, scope, "UpdateOptions")
    body = scales.check_scale(request.json_body())

    async def replace(_current: Object) -> Object:
        return body

    admission = scope.chain.admission(_attributes(scope, ctx))
    result = await scope.store.update_scale(ctx, scope.name, scope.version.name, replace,
                                            admission)
    return object_response(200, _rendered(result.object, target, request), target,
                           result.warnings)


async def patch(request: APIRequest, scope: Scope) -> Response:
    target = negotiate(request.header("accept"))
    content_type = patches.patch_type(request)
    force = patches.patch_force(request, content_type)
    ctx = write_context(request, scope, "PatchOptions", force)
    admission = scope.chain.admission(_attributes(scope, ctx))
    if content_type == patches.APPLY_PATCH:
        applied = request.json_body()

        async def apply(current: Object) -> Object:
            return SCALE_FIELD_MANAGER.apply(current, applied, ctx.field_manager, bool(force),
                                             meta.now(), "scale")

        result = await scope.store.update_scale(ctx, scope.name, scope.version.name, apply,
                                                admission, applied=True)
        return object_response(200, _rendered(result.object, target, request), target,
                               result.warnings)
    patch_document = patches.patcher(request, content_type)

    async def patched(current: Object) -> Object:
        return patch_document(current)

    result = await scope.store.update_scale(ctx, scope.name, scope.version.name, patched,
                                            admission)
    return object_response(200, _rendered(result.object, target, request), target,
                           result.warnings)
