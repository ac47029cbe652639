"""The admission attributes of one request (cf. apiserver pkg/admission/attributes.go): what
every admission plugin may look at, and what an AdmissionReview is made of."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from kext.auth.user import UserInfo
from kext.registry.rest import RequestContext, Warnings, options_object

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


class ReinvocationContext:
    """What the mutating plugins of one admission attempt share to decide on a second round
    (cf. admission.ReinvocationContext): a plugin that changed the object asks for it
    (should_reinvoke); in the second round is_reinvoke is set; values keep each plugin's own
    state between rounds, under its key."""

    def __init__(self) -> None:
        self.is_reinvoke = False
        self.should_reinvoke = False
        self.values: dict[str, Any] = {}


@dataclass(frozen=True)
class Attributes:
    """One request as admission sees it. object is what is being written (None on delete),
    old_object what is stored (None on create); options the meta.k8s.io/v1 CreateOptions,
    UpdateOptions or DeleteOptions of the operation. warnings and annotations are the
    request's (kube's warning recorder and audit annotations): a plugin adds to them."""

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
    warnings: Warnings = field(default_factory=Warnings, compare=False, repr=False)
    annotations: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    reinvocation: ReinvocationContext | None = field(default=None, compare=False, repr=False)

    def add_annotation(self, key: str, value: str) -> None:
        """Record an audit annotation; the first value of a key is kept, as kube keeps it."""
        self.annotations.setdefault(key, value)


def request_attributes(ctx: RequestContext, operation: Operation, kind: GroupVersionKind,
                       resource: GroupVersionResource, name: str = "") -> Attributes:
    """The attributes of a request before the store supplies the objects (kube's "static"
    attributes); name is "" for a create without one and for a deletecollection."""
    return Attributes(
        operation=operation, kind=kind, resource=resource, subresource=ctx.subresource,
        name=name, namespace=ctx.namespace, dry_run=ctx.dry_run,
        options=operation_options(operation, ctx.options), user=ctx.user,
        warnings=ctx.warnings, annotations=ctx.audit_annotations,
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


def copy_object(obj: Object) -> Object:
    """A deep copy of a JSON object (through orjson: several times faster than
    copy.deepcopy on API objects)."""
    copied: Object = orjson.loads(orjson.dumps(obj))
    return copied
