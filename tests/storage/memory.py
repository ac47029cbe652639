"""`MemoryStore`: storage.Interface in memory, for unit tests only (it is not part of kext).

It behaves like `kext.storage.etcd3.Etcd3Store` on a real etcd, so a test of the watch cache,
the registry or the server can run without an etcd process; tests/storage/test_store.py and
test_watch.py run the same contract against both to keep it that way. What it models:

- Revisions as etcd's: one counter for the whole store (1 when empty), moved by every write;
  an object's resourceVersion is the revision it was last written at (its mod revision); a
  delete is a write too, so the deleted object carries the delete's revision.
- Values are stored encoded (JSON without resourceVersion, kext.storage.versioner) and
  decoded on every read: callers never share objects with the store or with each other.
- History: every version of every key is kept, so a get or list at an exact revision, pages
  pinned to the first page's revision (continue tokens) and watches from a past revision
  work. `compact(revision)` drops the history before revision, as etcd's compaction: reads
  and watches from before it then raise ExpiredError.
- create/get/delete/guaranteed_update/list with Etcd3Store's preconditions, validation,
  retry on a concurrent change (a write between read and write, e.g. inside `update` or
  `validate`), no-op skip, resourceVersion semantics (Exact, NotOlderThan, the legacy rule)
  and error messages; every call is a suspension point, as a request to etcd is.
- Watches from a revision, in order and exactly once, with prev_object, predicate
  transitions, send_initial_events and the initial-events-end bookmark; with
  progress_notify, a BOOKMARK whenever the store's revision has moved past the last event
  under the watched prefix (etcd sends them on a timer: here they come at once).
- snapshot and watch_progress (one consistent read, as etcd's transaction).

Not modelled: etcd being unreachable or slow (no UnavailableError), leases, several members.

    store = MemoryStore()
    cacher = Cacher(store, "/registry/example.com/widgets/")  # the watch cache on it
    await store.create("/registry/example.com/widgets/default/a", {"metadata": {...}})

Test helpers beyond the interface: `compact(revision)`, `stored(key)` (the value as stored),
`watch_count` (watches open now).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import orjson

from kext.storage.continue_token import decode_continue, encode_continue
from kext.storage.errors import (
    CorruptObjectError,
    ExpiredError,
    InvalidObjectError,
    KeyExistsError,
    KeyNotFoundError,
    StorageError,
    TooLargeResourceVersionError,
)
from kext.storage.interface import (
    INITIAL_EVENTS_END_ANNOTATION,
    ListOptions,
    ListResult,
    Object,
    Preconditions,
    Predicate,
    SnapshotPage,
    UpdateFunc,
    WatchEvent,
    WatchOptions,
    WatchProgress,
)
from kext.storage.versioner import (
    decode_object,
    encode_object,
    parse_resource_version,
    with_resource_version,
    without_resource_version,
)


@dataclass(frozen=True)
class _Version:
    """One version of a key: its value (None: deleted at mod_revision)."""

    mod_revision: int
    create_revision: int
    value: bytes | None


@dataclass(frozen=True)
class _Change:
    """One write, as etcd's watch reports it: the new version and the one it replaced."""

    revision: int
    key: str
    version: _Version
    prev: _Version | None  # the live version before (None when the key was absent)


def _mod_revision(version: _Version) -> int:
    return version.mod_revision


def _change_revision(change: _Change) -> int:
    return change.revision


async def _request() -> None:
    """A call to storage is a suspension point, as a request to etcd is."""
    await asyncio.sleep(0)


class MemoryStore:
    """storage.Interface in memory, with etcd's semantics (see the module docstring)."""

    def __init__(self) -> None:
        self._revision = 1  # etcd's revision when nothing was ever written
        self._compacted = 0  # reads before this revision are ExpiredError
        self._history: dict[str, list[_Version]] = {}  # key -> versions, oldest first
        self._keys: list[str] = []  # every key with history, sorted (etcd's byte order)
        self._log: list[_Change] = []  # every write since the compacted revision
        self._changed = asyncio.Event()  # set (and replaced) by every write
        self._watches = 0

    # -- test helpers

    @property
    def watch_count(self) -> int:
        """How many watches are open (being iterated and not yet closed)."""
        return self._watches

    def stored(self, key: str) -> Object:
        """The current value at key as stored: the JSON object without resourceVersion."""
        version = self._at(key, self._revision)
        if version is None or version.value is None:
            raise KeyNotFoundError(key, f"key not found: {key}")
        value: Object = orjson.loads(version.value)
        return value

    async def compact(self, revision: int) -> None:
        """Drop the history before revision (etcd's compaction): reads and watches that need
        it then raise ExpiredError; the state at revision and after is kept."""
        await _request()
        if revision > self._revision:
            raise StorageError("", f"compaction at {revision}: a future revision")
        if revision <= self._compacted:
            raise ExpiredError("", "required revision has been compacted")
        self._compacted = revision
        for key in list(self._keys):
            versions = self._history[key]
            visible = bisect.bisect_right(versions, revision, key=_mod_revision) - 1
            if visible >= 0 and versions[visible].value is None:
                visible += 1  # a delete at or before revision: nothing of it is kept
            del versions[:max(visible, 0)]
            if not versions:
                del self._history[key]
                self._keys.remove(key)
        del self._log[:bisect.bisect_left(self._log, revision, key=_change_revision)]

    # -- reads and writes of versions

    def _at(self, key: str, revision: int) -> _Version | None:
        """The live version of key at revision (None: absent then)."""
        versions = self._history.get(key)
        if not versions:
            return None
        i = bisect.bisect_right(versions, revision, key=_mod_revision) - 1
        if i < 0 or versions[i].value is None:
            return None
        return versions[i]

    def _under(self, key_prefix: str, start: str | None = None) -> Iterator[str]:
        """Keys with history under key_prefix from start (inclusive), in order."""
        i = bisect.bisect_left(self._keys, start or key_prefix)
        while i < len(self._keys) and self._keys[i].startswith(key_prefix):
            yield self._keys[i]
            i += 1

    def _write(self, key: str, value: bytes | None) -> int:
        """Store value at key (None: delete) at a new revision; returns the revision."""
        self._revision += 1
        revision = self._revision
        versions = self._history.get(key)
        if versions is None:
            versions = self._history[key] = []
            bisect.insort(self._keys, key)
        prev = versions[-1] if versions and versions[-1].value is not None else None
        create = 0 if value is None else prev.create_revision if prev else revision
        version = _Version(revision, create, value)
        versions.append(version)
        self._log.append(_Change(revision, key, version, prev))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return revision

    def _check_revision(self, key: str, revision: int, expired: str) -> None:
        """Whether revision can be read: ExpiredError (with message expired) when compacted,
        TooLargeResourceVersionError when the store has not reached it."""
        if revision < self._compacted:
            raise ExpiredError(key, expired)
        if revision > self._revision:
            raise TooLargeResourceVersionError(key, revision, self._revision)

    # -- storage.Interface

    async def create(self, key: str, obj: Object) -> Object:
        """Store obj at key if absent (KeyExistsError otherwise); returns it with its RV."""
        await _request()
        stored = without_resource_version(obj)
        value = encode_object(key, stored)
        if self._at(key, self._revision) is not None:
            raise KeyExistsError(key, f"key exists: {key}")
        return with_resource_version(stored, self._write(key, value))

    async def get(
        self, key: str, *, resource_version: str = "", resource_version_match: str = ""
    ) -> Object:
        """The object at key, with Etcd3Store.get's resourceVersion semantics."""
        await _request()
        revision, minimum = 0, 0
        if resource_version and resource_version != "0":
            n = parse_resource_version(key, resource_version)
            if resource_version_match == "NotOlderThan":
                minimum = n
            else:
                revision = n
        if revision:
            self._check_revision(key, revision,
                                 f"resource version {resource_version} has been compacted")
        if minimum > self._revision:
            raise TooLargeResourceVersionError(key, minimum, self._revision)
        version = self._at(key, revision or self._revision)
        if version is None or version.value is None:
            raise KeyNotFoundError(key, f"key not found: {key}")
        return decode_object(key, version.value, version.mod_revision)

    async def delete(
        self,
        key: str,
        *,
        preconditions: Preconditions | None = None,
        validate: Callable[[Object], Awaitable[None]] | None = None,
        cached: Object | None = None,
    ) -> Object:
        """Delete key if the preconditions hold and validate passes, as Etcd3Store.delete:
        decided on cached first if given, then on the stored object when cached is stale."""
        await _request()
        from_cache = cached is not None
        if cached is not None:
            value = orjson.dumps(cached)
            mod_revision = int(cached["metadata"]["resourceVersion"])
        else:
            value, mod_revision = self._live(key)
        while True:
            current = decode_object(key, value, mod_revision)
            try:
                if preconditions is not None:
                    preconditions.check(key, current)
                if validate is not None:
                    await validate(decode_object(key, value, mod_revision))
            except Exception:
                if not from_cache:
                    raise
                # A cached copy may be stale: decide on what is stored.
                value, mod_revision = self._live(key)
                from_cache = False
                continue
            now = self._at(key, self._revision)
            if now is not None and now.mod_revision == mod_revision:
                current["metadata"]["resourceVersion"] = str(self._write(key, None))
                return current
            # Changed (or deleted) since read: decide again on the new state.
            value, mod_revision = self._live(key)
            from_cache = False

    def _live(self, key: str) -> tuple[bytes, int]:
        """The current value and mod revision at key (KeyNotFoundError when absent)."""
        version = self._at(key, self._revision)
        if version is None or version.value is None:
            raise KeyNotFoundError(key, f"key not found: {key}")
        return version.value, version.mod_revision

    async def guaranteed_update(
        self,
        key: str,
        update: UpdateFunc,
        *,
        ignore_not_found: bool = False,
        preconditions: Preconditions | None = None,
    ) -> Object:
        """Read-modify-write, retried when the key changed meanwhile; no write (and the
        current object back) when update changes nothing."""
        await _request()
        version = self._at(key, self._revision)
        while True:
            if version is None and not ignore_not_found:
                raise KeyNotFoundError(key, f"key not found: {key}")
            current = None
            if version is not None and version.value is not None:
                current = decode_object(key, version.value, version.mod_revision)
            if preconditions is not None:
                preconditions.check(key, current)
            new = without_resource_version(await update(current))
            if version is not None and version.value is not None and \
                    new == orjson.loads(version.value):
                return decode_object(key, version.value, version.mod_revision)
            value = encode_object(key, new)
            now = self._at(key, self._revision)
            # An absent key compares as mod revision 0, as in etcd's transaction.
            if (now.mod_revision if now else 0) == (version.mod_revision if version else 0):
                return with_resource_version(new, self._write(key, value))
            version = now

    async def list(self, key_prefix: str, options: ListOptions) -> ListResult:
        """Objects under key_prefix in key order, with Etcd3Store.list's semantics: pages at
        one revision, continue tokens, a predicate filling pages up to limit,
        remaining_item_count without predicate."""
        await _request()
        recursive = options.recursive
        if recursive and not key_prefix.endswith("/"):
            key_prefix += "/"
        limit = max(options.limit, 0)
        paging = limit > 0
        predicate = options.predicate
        start = key_prefix
        revision = 0  # 0 = the most recent
        minimum = 0
        continuing = bool(recursive and options.continue_token)
        if continuing:
            start, token_rv = decode_continue(options.continue_token, key_prefix)
            revision = max(token_rv, 0)
        elif options.resource_version:
            n = parse_resource_version(key_prefix, options.resource_version)
            match = options.resource_version_match
            if match == "Exact":
                if n == 0:
                    raise InvalidObjectError(
                        key_prefix, "resourceVersionMatch=Exact needs a resourceVersion > 0"
                    )
                revision = n
            elif match == "NotOlderThan":
                minimum = n
            elif match == "":
                if paging and n > 0:
                    revision = n
                else:
                    minimum = n
            else:
                raise InvalidObjectError(
                    key_prefix, f"unknown resourceVersionMatch value: {match!r}"
                )
        if revision:
            self._check_revision(
                key_prefix, revision,
                "The provided continue parameter is too old to display a consistent list "
                "result. You can start a new list without the continue parameter."
                if continuing else "The resourceVersion for the provided list is too old.",
            )
        if minimum > self._revision:
            raise TooLargeResourceVersionError(key_prefix, minimum, self._revision)
        at = revision or self._revision

        keys = self._under(key_prefix, start) if recursive else iter([key_prefix])
        live = [(k, v) for k in keys if (v := self._at(k, at)) is not None]
        items: list[Object] = []
        last_key = ""
        has_more = False
        for key, version in live:
            if paging and len(items) >= limit:
                has_more = True
                break
            last_key = key
            assert version.value is not None
            obj = decode_object(key, version.value, version.mod_revision)
            if predicate is None or predicate(obj):
                items.append(obj)
        if not has_more:
            return ListResult(items=items, resource_version=str(at))
        return ListResult(
            items=items,
            resource_version=str(at),
            continue_token=encode_continue(last_key + "\x00", key_prefix, at),
            remaining_item_count=len(live) - limit if predicate is None else None,
        )

    async def watch(
        self,
        key_prefix: str,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change under key_prefix after resource_version (0 or None = from now), as
        Etcd3Store.watch: ExpiredError when the revision is compacted (or compaction
        overtakes a watch that is behind), initial events and progress as WatchOptions says."""
        options = options or WatchOptions()
        recursive = options.recursive
        if recursive and not key_prefix.endswith("/"):
            key_prefix += "/"
        self._watches += 1
        try:
            await _request()
            last = resource_version or 0
            if options.send_initial_events:
                minimum, last = last, self._revision
                if last < minimum:
                    raise TooLargeResourceVersionError(key_prefix, minimum, last)
                keys = self._under(key_prefix) if recursive else iter([key_prefix])
                state = [(k, v) for k in list(keys) if (v := self._at(k, last)) is not None]
                for key, version in state:
                    assert version.value is not None
                    obj = decode_object(key, version.value, version.mod_revision)
                    if predicate is None or predicate(obj):
                        yield WatchEvent("ADDED", key, obj, None, last)
                if options.allow_bookmarks:
                    yield WatchEvent(
                        "BOOKMARK", key_prefix,
                        {"metadata": {"resourceVersion": str(last),
                                      "annotations": {INITIAL_EVENTS_END_ANNOTATION: "true"}}},
                        None, last,
                    )
            last = last or self._revision
            reported = last  # the newest revision of an event under key_prefix or a bookmark
            while True:
                if last + 1 < self._compacted:
                    raise ExpiredError(
                        key_prefix, f"too old resource version: {last} ({self._compacted})"
                    )
                changed = self._changed
                i = bisect.bisect_right(self._log, last, key=_change_revision)
                if i < len(self._log):
                    change = self._log[i]
                    last = change.revision
                    selected = change.key.startswith(key_prefix) if recursive \
                        else change.key == key_prefix
                    if selected:
                        reported = last
                        event = _watch_event(change, predicate)
                        if event is not None:
                            yield event
                    continue
                if options.progress_notify and self._revision > reported:
                    reported = self._revision
                    yield WatchEvent("BOOKMARK", key_prefix,
                                     {"metadata": {"resourceVersion": str(reported)}}, None,
                                     reported)
                    continue
                await changed.wait()
        finally:
            self._watches -= 1

    async def current_revision(self) -> int:
        """The store's current revision."""
        await _request()
        return self._revision

    async def count(self, key_prefix: str) -> int:
        """How many keys are under key_prefix."""
        await _request()
        if not key_prefix.endswith("/"):
            key_prefix += "/"
        return sum(1 for k in self._under(key_prefix) if self._at(k, self._revision))

    async def snapshot(
        self, key_prefix: str, *, page_size: int
    ) -> AsyncGenerator[SnapshotPage, None]:
        """Every object under key_prefix with its key, page_size at a time, all pages at the
        revision current when the first was read (ExpiredError if compacted meanwhile)."""
        if page_size < 1:
            raise ValueError("page_size must be positive")
        if not key_prefix.endswith("/"):
            key_prefix += "/"
        await _request()
        revision = self._revision
        start = key_prefix
        while True:
            if revision < self._compacted:
                raise ExpiredError(key_prefix, "required revision has been compacted")
            page: list[tuple[str, Object]] = []
            more = False
            for key in self._under(key_prefix, start):
                version = self._at(key, revision)
                if version is None or version.value is None:
                    continue
                if len(page) == page_size:
                    more = True
                    break
                page.append((key, decode_object(key, version.value, version.mod_revision)))
            yield SnapshotPage(revision, page)
            if not more:
                return
            start = page[-1][0] + "\x00"
            await _request()

    async def watch_progress(self, key_prefix: str, *, since: int) -> WatchProgress:
        """The keys under key_prefix now, and the newest mod revision after since."""
        await _request()
        if not key_prefix.endswith("/"):
            key_prefix += "/"
        count = latest = 0
        for key in self._under(key_prefix):
            version = self._at(key, self._revision)
            if version is not None:
                count += 1
                if version.mod_revision > since:
                    latest = max(latest, version.mod_revision)
        return WatchProgress(revision=self._revision, count=count, latest_write=latest)

    @property
    def last_sync_resource_version(self) -> int:
        """0: like Etcd3Store, this store keeps no revision for its callers to trust."""
        return 0


def _watch_event(change: _Change, predicate: Predicate | None) -> WatchEvent | None:
    """The WatchEvent for one change, as Etcd3Store's watch makes it from etcd's event (None
    when predicate selects neither side)."""
    key, revision = change.key, change.revision
    prev = None
    if change.prev is not None and change.prev.value is not None:
        prev = decode_object(key, change.prev.value, change.prev.mod_revision)
    value = change.version.value
    if value is None:
        if prev is None:
            raise CorruptObjectError(key, f"a delete of {key} at {revision} without the object")
        if predicate is not None and not predicate(prev):
            return None
        return WatchEvent("DELETED", key, with_resource_version(prev, revision), prev, revision)
    obj = decode_object(key, value, revision)
    created = change.version.create_revision == revision
    if created:
        prev = None
    if predicate is None:
        return WatchEvent("ADDED" if created else "MODIFIED", key, obj, prev, revision)
    matches = predicate(obj)
    prev_matches = prev is not None and predicate(prev)
    if matches and prev_matches:
        return WatchEvent("MODIFIED", key, obj, prev, revision)
    if matches:
        return WatchEvent("ADDED", key, obj, prev, revision)
    if prev_matches:
        assert prev is not None
        return WatchEvent("DELETED", key, with_resource_version(prev, revision), prev, revision)
    return None
