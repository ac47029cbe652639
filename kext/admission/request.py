"""What a server-wide Python admission hook (`admission.hooks`) is given and how it refuses:
one `AdmissionRequest` per call (the fields of an AdmissionReview's request, as Python
values), and `Denied`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kext.admission.attributes import Attributes, GroupVersionKind, GroupVersionResource
from kext.auth.user import UserInfo
from kext.registry.rest import Warnings

Object = dict[str, Any]


@dataclass
class AdmissionRequest:
    """One admission call: operation is "CREATE", "UPDATE" or "DELETE"; object is what is
    being written (None on DELETE), old_object what is stored (None on CREATE); options the
    request's meta.k8s.io/v1 CreateOptions, UpdateOptions or DeleteOptions. A mutating hook
    changes `object` in place or returns a new object; `warn()` adds a `Warning` header to
    the response."""

    operation: str
    user_info: UserInfo
    kind: GroupVersionKind
    resource: GroupVersionResource
    subresource: str
    name: str
    namespace: str
    object: Object | None
    old_object: Object | None
    dry_run: bool
    options: Object
    _warnings: Warnings = field(default_factory=Warnings, repr=False, compare=False)

    @classmethod
    def of(cls, attributes: Attributes, obj: Object | None) -> AdmissionRequest:
        """The request of attributes, with obj as the object the hook is given."""
        return cls(
            operation=attributes.operation,
            user_info=attributes.user or UserInfo(""),
            kind=attributes.kind,
            resource=attributes.resource,
            subresource=attributes.subresource,
            name=attributes.name,
            namespace=attributes.namespace,
            object=obj,
            old_object=attributes.old_object,
            dry_run=attributes.dry_run,
            options=attributes.options,
            _warnings=attributes.warnings,
        )

    def warn(self, message: str) -> None:
        """Send message to the client as a `Warning` header (each text once)."""
        self._warnings.add(message)


class Denied(Exception):
    """Refuses the request. Answered as kube answers a webhook's denial: code (default, and
    anything below 400, becomes 400) and reason as given, and the message
    `admission hook "<module:callable>" denied the request: <message>`."""

    def __init__(self, message: str = "", code: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
