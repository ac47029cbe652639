"""What a write hands the generic store besides the object (cf. apiserver pkg/registry/rest):
the request's context and the admission steps. The store calls the steps at kube's points
(mutation before the strategy's PrepareFor*, validation after its Validate and Canonicalize,
each retried with a guaranteed update) and decides nothing itself: what the steps do is the
caller's (kext.admission builds them for a request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kext.auth.user import UserInfo

Object = dict[str, Any]

OPTIONS_API_VERSION = "meta.k8s.io/v1"

# kube's warning recorder (endpoints/filters/warning.go): past this many characters in all,
# each warning is cut to TRUNCATE_ITEM_RUNES.
TRUNCATE_AT_TOTAL_RUNES = 4 * 1024
TRUNCATE_ITEM_RUNES = 256


class Warnings:
    """The warnings of one request (cf. kube's warning recorder): each text once, in the
    order added, cut short as kube cuts them when they grow too long. Admission adds to it;
    the response sends them as `Warning` headers."""

    def __init__(self) -> None:
        self._texts: dict[str, None] = {}

    def add(self, text: str) -> None:
        if text:
            self._texts.setdefault(text)

    def __bool__(self) -> bool:
        return bool(self._texts)

    def __iter__(self) -> Iterator[str]:
        sent: list[str] = []
        written, truncating = 0, False
        for text in self._texts:
            if truncating:
                if written >= TRUNCATE_AT_TOTAL_RUNES:
                    break  # as kube: once truncating and full, later warnings are dropped
                text = text[:TRUNCATE_ITEM_RUNES]
            elif written + len(text) > TRUNCATE_AT_TOTAL_RUNES:
                truncating = True  # replay what was sent, each cut short, and this one
                sent = [t[:TRUNCATE_ITEM_RUNES] for t in (*sent, text)]
                written = sum(len(t) for t in sent)
                continue
            sent.append(text)
            written += len(text)
        return iter(sent)


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
    # What admission adds to the request (shared by every attempt and every object of it):
    # warnings for the response, and audit annotations (a webhook's auditAnnotations) for
    # the audit event.
    warnings: Warnings = field(default_factory=Warnings)
    audit_annotations: dict[str, str] = field(default_factory=dict)


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
