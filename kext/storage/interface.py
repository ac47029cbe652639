"""The storage interface (cf. k8s.io/apiserver pkg/storage/interfaces.go): what the registry
needs from storage, and what the watch cache (cacher.py) needs from the storage it follows.
etcd3.py implements it on etcd, cacher.py on top of another implementation, and the tests'
tests/storage/memory.py in memory.

Objects are decoded JSON dicts. Storage owns `metadata.resourceVersion`: on the way out it
is set to the object's mod revision (as a string); on the way in it is removed before
encoding (versioner.py). Revisions are etcd's: one counter for the whole store, moved by
every write. Keys are full keys (`<prefix>/<group>/<plural>/[<namespace>/]<name>`) as str.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kext.storage.errors import ResourceVersionConflictError

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

    def check(self, key: str, obj: Object | None) -> None:
        """ResourceVersionConflictError unless obj (the stored object at key, with its
        resourceVersion) matches; an absent object matches no precondition."""
        meta = (obj or {}).get("metadata") or {}
        if self.uid is not None and meta.get("uid", "") != self.uid:
            raise ResourceVersionConflictError(
                key,
                f"Precondition failed: UID in precondition: {self.uid}, "
                f"UID in object meta: {meta.get('uid', '')}",
            )
        rv = self.resource_version
        if rv is not None and meta.get("resourceVersion", "") != rv:
            raise ResourceVersionConflictError(
                key,
                f"Precondition failed: ResourceVersion in precondition: {rv}, "
                f"ResourceVersion in object meta: {meta.get('resourceVersion', '')}",
            )


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


@dataclass(frozen=True)
class WatchOptions:
    """How to watch, beyond where from and what (cf. kube's storage.ListOptions for Watch).

    send_initial_events (the watch-list protocol; SendInitialEvents): first an ADDED for
    every selected object of a consistent state at a revision not older than the watch's
    resource_version, then the changes after that revision. allow_bookmarks
    (Predicate.AllowWatchBookmarks): with send_initial_events, a BOOKMARK annotated
    INITIAL_EVENTS_END_ANNOTATION ends the initial events; implementations that can also send
    periodic BOOKMARKs to idle watchers (the watch cache) do. progress_notify
    (ProgressNotify, for internal clients like the watch cache): storage's own progress
    notifications, as BOOKMARKs. recursive=False watches the one key named, not a prefix.
    """

    send_initial_events: bool = False
    allow_bookmarks: bool = False
    progress_notify: bool = False
    recursive: bool = True


# The annotation on the BOOKMARK that ends the initial events of a watch-list request.
INITIAL_EVENTS_END_ANNOTATION = "k8s.io/initial-events-end"


@dataclass(frozen=True)
class SnapshotPage:
    """One page of a snapshot: objects with their keys, in key order, and the revision every
    page of the snapshot is read at."""

    revision: int
    items: list[tuple[str, Object]]


@dataclass(frozen=True)
class WatchProgress:
    """Where storage stands under a key prefix, read in one consistent request.

    revision is storage's current revision (kube's GetCurrentResourceVersion); count is how
    many keys are under the prefix at that revision; latest_write is the newest mod revision
    of a key under the prefix written after the `since` asked about, 0 when none was.
    """

    revision: int
    count: int
    latest_write: int

    def unchanged(self, count: int) -> bool:
        """Whether the prefix holds at `revision` what it held at `since`, when it held count
        keys then: nothing written after `since`, and as many keys (a delete leaves no key
        to carry a newer mod revision, so it shows only in the count)."""
        return self.latest_write == 0 and self.count == count


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
    # The object converted to other API versions by whoever reads the event (the registry),
    # by version, likewise shared: converted once per version, not once per watcher.
    converted: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


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
        cached: Object | None = None,
    ) -> Object:
        """Delete key if the preconditions hold and validate passes (both checked against the
        current object, retried on concurrent change). Returns the deleted object with the
        delete's revision as resourceVersion. cached (kube's cachedExistingObject: e.g. the
        watch cache's copy, not mutated) may be taken as the current object to save a read;
        a stale one must cost a retry, never a wrong decision."""
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
        self,
        key_prefix: str,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change under key_prefix after resource_version, in order, once each.

        What None or 0 means (from now, or the current state as ADDED first) is the
        implementation's; options (None: the defaults) as WatchOptions says. With a
        predicate, an object that stops matching is DELETED and one that starts matching is
        ADDED. Raises ExpiredError (when iterated) if resource_version is compacted. Closing
        the generator ends the watch."""
        ...

    async def current_revision(self) -> int:
        """Storage's current revision, a consistent read (kube's GetCurrentResourceVersion)."""
        ...

    async def count(self, key_prefix: str) -> int:
        """How many keys are under key_prefix."""
        ...

    def snapshot(
        self, key_prefix: str, *, page_size: int
    ) -> AsyncGenerator[SnapshotPage, None]:
        """Every object under key_prefix (which ends with '/') with its key: a consistent read
        at storage's current revision, page_size keys at a time, every page at that one
        revision (the watch cache's initial list; kube's reflector paging through GetList).
        Yields at least one page (empty when nothing is stored). Raises ExpiredError if the
        revision is compacted before the last page is read."""
        ...

    async def watch_progress(self, key_prefix: str, *, since: int) -> WatchProgress:
        """Where storage stands under key_prefix (which ends with '/') compared with revision
        since, in one consistent read.

        A watcher of key_prefix that has applied every change up to `since` proves with it
        that it holds storage's current state (WatchProgress.unchanged), without waiting for
        an event: kext's stand-in for kube's RequestWatchProgress, which etcd 3.4 cannot
        serve reliably."""
        ...

    @property
    def last_sync_resource_version(self) -> int:
        """The newest revision this storage is known to reflect without asking (the watch
        cache's revision: kube's LastSyncResourceVersion); 0 when it keeps none, as a store
        that reads storage on every call."""
        ...
