"""What a write hands the generic store besides the object (cf. apiserver pkg/registry/rest):
the request's context and the admission steps. The store calls the steps at kube's points
(mutation before the strategy's PrepareFor*, validation after its Validate and Canonicalize,
each retried with a guaranteed update) and decides nothing itself: what the steps do is the
caller's (kext.admission builds them for a request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kext.auth.user import UserInfo

Object = dict[str, Any]

OPTIONS_API_VERSION = "meta.k8s.io/v1"


@dataclass(frozen=True)
class RequestContext:
    """What kube carries in a request's context.Context (user, namespace, request info),
    with the write options the store acts on and the request's options object as sent."""

    user: UserInfo | None = None
    namespace: str = ""
    subresource: str = ""
    dry_run: bool = False
    field_manager: str = ""  # the manager recorded in managedFields (never empty in use)
    field_validation: str = "Warn"  # Strict | Warn | Ignore
    # The request's meta.k8s.io/v1 CreateOptions, UpdateOptions, PatchOptions or
    # DeleteOptions as the client sent them (an AdmissionReview carries them).
    options: Object = field(default_factory=dict)


# Called with the object being written and the stored one (None on create); changes the
# object in place or returns a replacement (None keeps the object it was given).
MutateObjectFunc = Callable[[Object, Object | None], Awaitable[Object | None]]
# Called with copies of the object about to be stored and of the stored one (None on create);
# refuses the write by raising a StatusError (cf. rest.ValidateObjectFunc and
# ValidateObjectUpdateFunc).
ValidateObjectFunc = Callable[[Object, Object | None], Awaitable[None]]
# Called with a copy of the object about to be deleted (or marked for deletion); refuses by
# raising a StatusError.
ValidateDeleteFunc = Callable[[Object], Awaitable[None]]


@dataclass(frozen=True)
class Admission:
    """The admission steps of one create, update, patch or apply. A step left None is not
    run: `ADMIT_NOTHING` is the store's default for callers that need no admission."""

    mutate: MutateObjectFunc | None = None
    validate: ValidateObjectFunc | None = None


ADMIT_NOTHING = Admission()


def options_object(kind: str, **fields: Any) -> Object:
    """A meta.k8s.io/v1 options object of kind (CreateOptions...) with the fields given
    (None and empty values left out, as Go's omitempty does)."""
    obj: Object = {"kind": kind, "apiVersion": OPTIONS_API_VERSION}
    obj.update({k: v for k, v in fields.items() if v is not None and v != "" and v != []})
    return obj
