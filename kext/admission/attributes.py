"""The admission attributes of one request (cf. apiserver pkg/admission/attributes.go): what
every admission plugin may look at, and what an AdmissionReview is made of."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from kext.auth.user import UserInfo
from kext.registry.rest import RequestContext, options_object

Object = dict[str, Any]

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
CREATE: Operation = "CREATE"
UPDATE: Operation = "UPDATE"
DELETE: Operation = "DELETE"

# The options kind an AdmissionReview carries for each operation.
OPTIONS_KIND = {CREATE: "CreateOptions", UPDATE: "UpdateOptions", DELETE: "DeleteOptions"}


class GroupVersionKind(NamedTuple):
    group: str
    version: str
    kind: str


class GroupVersionResource(NamedTuple):
    group: str
    version: str
    resource: str


@dataclass(frozen=True)
class Attributes:
    """One request as admission sees it. object is what is being written (None on delete),
    old_object what is stored (None on create); options the meta.k8s.io/v1 CreateOptions,
    UpdateOptions or DeleteOptions of the operation."""

    operation: Operation
    kind: GroupVersionKind
    resource: GroupVersionResource
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    object: Object | None = None
    old_object: Object | None = None
    dry_run: bool = False
    options: Object = field(default_factory=dict)
    user: UserInfo | None = None


def request_attributes(ctx: RequestContext, operation: Operation, kind: GroupVersionKind,
                       resource: GroupVersionResource, name: str = "") -> Attributes:
    """The attributes of a request before the store supplies the objects (kube's "static"
    attributes); name is "" for a create without one and for a deletecollection."""
    return Attributes(
        operation=operation, kind=kind, resource=resource, subresource=ctx.subresource,
        name=name, namespace=ctx.namespace, dry_run=ctx.dry_run,
        options=operation_options(operation, ctx.options), user=ctx.user,
    )


def with_objects(static: Attributes, obj: Object | None, old: Object | None) -> Attributes:
    """The attributes of one write: a create when there is no old object, else an update
    (as a patch or an apply that creates is admitted as a CREATE); a create without a name
    in the request is named by its object."""
    if static.operation == DELETE:
        return dataclasses.replace(static, object=obj, old_object=old)
    operation = CREATE if old is None else UPDATE
    name = static.name or ((obj or {}).get("metadata") or {}).get("name", "")
    options = static.options
    if operation != static.operation:
        options = operation_options(operation, options)
    return dataclasses.replace(static, operation=operation, name=name, object=obj,
                               old_object=old, options=options)


def operation_options(operation: Operation, options: Object) -> Object:
    """The request's options as the operation's kind (PatchOptions become CreateOptions or
    UpdateOptions, as kube's patchToCreateOptions and patchToUpdateOptions do)."""
    wanted = OPTIONS_KIND.get(operation, "")
    if not options or options.get("kind") == wanted or operation == DELETE:
        return options
    return options_object(
        wanted, dryRun=options.get("dryRun"), fieldManager=options.get("fieldManager"),
        fieldValidation=options.get("fieldValidation"),
    )
