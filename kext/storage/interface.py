"""The storage interface shared by etcd access (etcd3.py) and the watch cache (cacher.py).

Objects are decoded JSON dicts. Storage owns `metadata.resourceVersion`: on the way out it
is set to the etcd mod revision (as a string); on the way in it is removed before encoding.
Keys are full etcd keys (`<prefix>/<group>/<plural>/[<namespace>/]<name>`) as str.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Object = dict[str, Any]

# Called with the current object (None when absent and ignore_not_found) and returns the
# object to store; it may raise to abort the update (the exception propagates unchanged).
UpdateFunc = Callable[[Object | None], Awaitable[Object]]

# Returns True when the object is selected (label/field selectors) for a list or watch.
Predicate = Callable[[Object], bool]


@dataclass(frozen=True)
class Preconditions:
    """Checked against the stored object before an update or delete (like metav1.Preconditions)."""

    uid: str | None = None
    resource_version: str | None = None


@dataclass(frozen=True)
class ListOptions:
    """How to list: resourceVersion semantics follow kube-apiserver's.

    resource_version "" = most recent (consistent read); "0" = any (cache may serve);
    "N" with match "" or "NotOlderThan" = at least N; with "Exact" = exactly at N.
    A continue token overrides resource_version: the page comes from the token's revision.
    """

    resource_version: str = ""
    resource_version_match: str = ""  # "", "NotOlderThan", "Exact"
    limit: int = 0  # 0 = no limit
    continue_token: str = ""
    predicate: Predicate | None = None
    recursive: bool = True


@dataclass(frozen=True)
class ListResult:
    items: list[Object]
    resource_version: str  # the revision this list is a snapshot of
    continue_token: str = ""  # non-empty when more items remain
    remaining_item_count: int | None = None


EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]


@dataclass(frozen=True)
class WatchEvent:
    """One change. For DELETED, `object` is the last state with resourceVersion = the delete's
    revision. `prev_object` is the state before the change (None for ADDED)."""

    type: EventType
    key: str
    object: Object
    prev_object: Object | None
    revision: int
    # Encodings of this event by representation, filled by the first watcher that needs one
    # and shared by every other: an event is serialized once, however many watch it.
    encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


class Interface(Protocol):
    """What the registry needs from storage (cf. k8s.io/apiserver pkg/storage.Interface)."""

    async def create(self, key: str, obj: Object) -> Object:
        """Store obj at key if absent (KeyExistsError otherwise); returns it with its RV."""
        ...

    async def get(self, key: str, *, resource_version: str = "",
                  resource_version_match: str = "") -> Object:
        """The object at key (KeyNotFoundError if absent). resource_version and match as in
        ListOptions (kube's GET treats N as NotOlderThan)."""
        ...

    async def delete(
        self,
        key: str,
        *,
        preconditions: Preconditions | None = None,
        validate: Callable[[Object], Awaitable[None]] | None = None,
    ) -> Object:
        """Delete key if the preconditions hold and validate passes (both checked against the
        current object, retried on concurrent change). Returns the deleted object with the
        delete's revision as resourceVersion."""
        ...

    async def guaranteed_update(
        self,
        key: str,
        update: UpdateFunc,
        *,
        ignore_not_found: bool = False,
        preconditions: Preconditions | None = None,
    ) -> Object:
        """Read-modify-write with a compare on mod revision, retried on conflict. If update
        returns an object equal to the current one nothing is written and the current object
        is returned."""
        ...

    async def list(self, key_prefix: str, options: ListOptions) -> ListResult:
        """Objects under key_prefix (which ends with '/'), in key order."""
        ...

    def watch(
        self, key_prefix: str, *, resource_version: int | None,
        predicate: Predicate | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change under key_prefix after resource_version (0 = from now), in order.
        Raises ExpiredError (when iterated) if resource_version is compacted."""
        ...

    async def current_revision(self) -> int:
        """etcd's current revision (a quorum read)."""
        ...

    async def count(self, key_prefix: str) -> int:
        """How many keys are under key_prefix."""
        ...
