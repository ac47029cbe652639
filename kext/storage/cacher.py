"""The watch cache: storage.Interface for one resource, served from memory (cf. k8s.io/apiserver
pkg/storage/cacher: cacher.go, watch_cache.go, cache_watcher.go).

A `Cacher` sits on another storage.Interface (etcd's, in kext) and depends on nothing else of
it. It lists its resource root once (`snapshot`), keeps every current object's JSON encoding
in an in-memory index and the most recent events in a bounded window, and follows storage
with ONE watch of the whole root. From that it serves:

- gets and lists with resourceVersion "0" (any), "N" (not older than N) and "" (consistent:
  the cache first proves it has caught up with a revision of storage's read after the call,
  one read shared by concurrent callers, with `watch_progress` when only writes elsewhere
  moved it, else storage answers); lists are built from the cached encodings;
- the pages of a list (limit, continue tokens) and Exact revisions, from the index and the
  window's events after the page's revision (kube 1.34's snapshots), while the window
  reaches back to it;
- every watch of the resource (`watch_to`): each event is handed, as it is dispatched, to
  the sink of every watcher it concerns (WatchSink: no task, future or timer per event per
  watcher), worked out once per distinct selector, the same WatchEvent object for all (so
  each event is encoded once per representation); one that allows bookmarks also gets a
  BOOKMARK about every minute, changes or not. `watch()` is the same as a generator.

Writes and older revisions go to storage. Objects handed out are the caller's; events and
the objects in them are shared (do not mutate them).

A watcher whose sink pushes back is paused and its events held in a bounded queue; one that
stays behind past the bound is cut off (its stream ends, the client watches again from the
last resourceVersion it saw), so it never stalls the others.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import itertools
import logging
import math
import random
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import overload

import orjson

from kext.storage.continue_token import decode_continue, encode_continue
from kext.storage.errors import (
    ExpiredError,
    KeyNotFoundError,
    StorageError,
    TooLargeResourceVersionError,
    UnavailableError,
)
from kext.storage.interface import (
    INITIAL_EVENTS_END_ANNOTATION,
    Interface,
    ListOptions,
    ListResult,
    Object,
    Preconditions,
    Predicate,
    SnapshotPage,
    UpdateFunc,
    WatchControl,
    WatchEvent,
    WatchOptions,
    WatchProgress,
    WatchSink,
)
from kext.storage.sinks import iterate
from kext.storage.versioner import with_resource_version

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 1024  # events kept for watches that resume from a resourceVersion
DEFAULT_WATCHER_QUEUE = 1024  # events queued per watcher before it is cut off
DEFAULT_BOOKMARK_INTERVAL = 60.0  # seconds; kube-apiserver's defaultBookmarkFrequency
_BOOKMARK_JITTER = 0.25  # kube-apiserver's bookmark timer: wait.Jitter(time.Second, 0.25)
DEFAULT_BLOCK_TIMEOUT = 3.0  # seconds to wait for freshness; kube-apiserver's blockTimeout
LIST_PAGE_SIZE = 10000  # kube-apiserver's storageWatchListPageSize

_RELIST_BACKOFF_MAX = 2.0  # seconds between attempts to list after a failure
_POLL_SLICE = 0.25  # seconds between looks at etcd while waiting for it to reach a revision
_UNCOMPACTED_SECONDS = 1.0  # how long a revision found in etcd is taken as not compacted


class _Watcher:
    """One watch served by the cache: its selection, where it stands, and its sink. Events
    go straight to the sink as they are dispatched; only while the sink's connection pushes
    back (paused), or before the initial events are all out, are they held in a bounded
    queue. It is the watch's WatchControl."""

    __slots__ = (
        "allow_bookmarks",
        "buffer",
        "capacity",
        "done",
        "draining",
        "floor",
        "key",
        "last_rv",
        "next_bookmark",
        "on_stop",
        "paused",
        "pending",
        "predicate",
        "prefix",
        "sink",
    )

    def __init__(
        self,
        prefix: str,
        predicate: Predicate | None,
        floor: int,
        known: int,
        capacity: int,
        allow_bookmarks: bool,
        next_bookmark: float,
        sink: WatchSink,
        pending: Iterator[WatchEvent] | None,
        on_stop: Callable[[_Watcher], None],
        key: str | None = None,
    ) -> None:
        self.prefix = prefix
        self.predicate = predicate
        self.key = key  # a watch of one key: only its events, though registered at prefix
        # Live events at or below floor are already covered by what the watch started with.
        self.floor = floor
        # The newest revision the client knows it has seen everything up to (for bookmarks).
        self.last_rv = known
        self.capacity = capacity
        self.allow_bookmarks = allow_bookmarks
        self.next_bookmark = next_bookmark
        self.sink = sink
        self.pending = pending  # the initial events not sent yet (they go before the rest)
        self.on_stop = on_stop
        self.buffer: deque[WatchEvent] = deque()
        self.paused = True  # until the consumer resumes it
        self.draining = False
        self.done = False

    def push(self, event: WatchEvent) -> bool:
        """Send event now, or hold it; False when the queue is full (the watch is behind)."""
        if self.paused or self.buffer or self.pending is not None or self.draining:
            if len(self.buffer) >= self.capacity:
                return False
            self.buffer.append(event)
        else:
            self.sink.send(event)
        self.last_rv = event.revision
        return True

    # -- WatchControl

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        if self.draining:
            return  # the drain under way goes on
        self.draining = True
        try:
            while not self.paused and not self.done:
                if self.pending is not None:
                    event = next(self.pending, None)
                    if event is None:
                        self.pending = None
                        continue
                    self.last_rv = max(self.last_rv, event.revision)
                elif self.buffer:
                    event = self.buffer.popleft()
                else:
                    return
                self.sink.send(event)
        finally:
            self.draining = False

    def stop(self) -> None:
        if not self.done:
            self.done = True
            self.buffer.clear()
            self.pending = None
            self.on_stop(self)

    def end(self, error: StorageError | None = None) -> None:
        """Stop delivering: the sink is closed (with error, if given)."""
        if self.done:
            return
        self.done = True
        self.buffer.clear()  # the client re-watches; what was queued is not worth the memory
        self.pending = None
        self.sink.close(error)


class Cacher:
    """storage.Interface for the resource stored under `root`, served from a watch cache.

    `store` is the storage every write (and what the cache cannot serve) goes to, and the
    one the cache lists and follows.
    `window` events are kept for watches resuming from a resourceVersion; a watcher whose
    queue holds `watcher_queue` events is cut off; watchers that allow bookmarks get one every
    `bookmark_interval` seconds (kube-apiserver: a minute), at the cache's revision, even when
    nothing changed; reads and watches wait at most `block_timeout` seconds for the cache (or
    etcd) to reach a requested revision. Call `start()` before use and `stop()` at shutdown.
    """

    def __init__(
        self,
        store: Interface,
        root: str,
        *,
        window: int = DEFAULT_WINDOW,
        watcher_queue: int = DEFAULT_WATCHER_QUEUE,
        bookmark_interval: float = DEFAULT_BOOKMARK_INTERVAL,
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        if not root.startswith("/") or not root.endswith("/") or root == "/":
            raise ValueError(f"watch cache root {root!r}: expected a key prefix like /a/b/")
        if window < 1 or watcher_queue < 1 or page_size < 1:
            raise ValueError("window, watcher_queue and page_size must be positive")
        if bookmark_interval <= 0 or block_timeout < 0:
            raise ValueError("bookmark_interval must be positive, block_timeout not negative")
        self.store = store
        self.root = root
        self.window = window
        self.watcher_queue = watcher_queue
        self.bookmark_interval = bookmark_interval
        self.block_timeout = block_timeout
        self.page_size = page_size

        # The state at revision _rv: key -> the object's JSON encoding (with its
        # resourceVersion), and the keys in order (for lists). Encodings, not decoded
        # objects: a third of the memory, and lists are built from them without encoding.
        self._index: dict[str, bytes] = {}
        self._keys: list[str] = []
        self._rv = 0
        self._generation = 0  # bumped by every relist
        # (cache revision, generation, etcd revision) of the last proof that the cache held
        # etcd's current state, so repeated consistent reads do not rescan etcd
        self._proven: tuple[int, int, int] = (-1, -1, -1)
        # Recent events in revision order; a watch from N >= _window_floor can be served.
        self._events: deque[WatchEvent] = deque()
        self._window_floor = 0
        self._ready = asyncio.Event()
        # Set (and at once cleared) whenever _rv moves: wakes whoever waits for freshness.
        self._progress = asyncio.Event()

        # by key prefix, then by predicate: watchers with equal selectors are matched once
        self._watchers: dict[str, dict[Predicate | None, dict[_Watcher, None]]] = {}
        self._bookmark_watchers: dict[_Watcher, None] = {}
        self._watcher_count = 0
        self._task: asyncio.Task[None] | None = None
        self._bookmark_task: asyncio.Task[None] | None = None

        self.etcd_watch_count = 0  # etcd watches held (1 while following etcd)
        self.terminated_watchers = 0  # watchers cut off because they did not keep up
        # etcd's current revision being read, and the read that follows it (see
        # _current_revision)
        self._revision_read: asyncio.Future[int] | None = None
        self._revision_next: asyncio.Future[int] | None = None
        # (revision, loop time): etcd still held that revision then (see _snapshot_list)
        self._uncompacted: tuple[int, float] = (0, -math.inf)
        self.consistent_reads_from_cache = 0  # consistent reads the cache could serve
        self.consistent_read_fallbacks = 0  # consistent reads etcd served after the wait

    # -- lifecycle and state

    @property
    def ready(self) -> bool:
        """Whether the cache is primed (listed and following etcd): readyz."""
        return self._ready.is_set()

    @property
    def last_sync_resource_version(self) -> int:
        """The latest revision the cache has seen (events and storage's progress
        notifications): kube's LastSyncResourceVersion."""
        return self._rv

    @property
    def watcher_count(self) -> int:
        """How many watches the cache serves."""
        return self._watcher_count

    @property
    def object_count(self) -> int:
        """How many objects the cache holds."""
        return len(self._index)

    async def start(self) -> None:
        """Start listing and following etcd in the background; `ready` turns true once primed.
        Returns at once: an unreachable etcd is retried, not raised."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"watch cache {self.root}")
        self._bookmark_task = loop.create_task(
            self._send_bookmarks(), name=f"watch cache bookmarks {self.root}"
        )

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the cache is primed (TimeoutError after timeout seconds)."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        """Stop following etcd and end every watch (cleanly: clients re-watch elsewhere)."""
        tasks = [t for t in (self._task, self._bookmark_task) if t is not None]
        self._task = self._bookmark_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ready.clear()
        self._terminate_watchers(lambda w: None)

    async def _run(self) -> None:
        """List, then follow etcd; relist after compaction or any failure (kube's reflector)."""
        backoff = 0.1
        while True:
            try:
                await self._relist()
                backoff = 0.1
                await self._follow()
                raise StorageError(self.root, "the etcd watch ended")  # it never does by itself
            except ExpiredError as exc:
                log.warning("watch cache of %s fell out of etcd's history (%s); listing again",
                            self.root, exc)
                self._unready(lambda w: ExpiredError(
                    self.root,
                    f"too old resource version: {w.last_rv} (the watch cache was re-listed "
                    "after etcd compacted its history)",
                ))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Any other failure (etcd unreachable at list time, a value that does not
                # decode, a refused watch): start over after a pause, as the reflector does.
                log.warning("watch cache of %s failed: %s; listing again in %.1fs",
                            self.root, exc, backoff)
                self._unready(lambda w: None)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RELIST_BACKOFF_MAX)

    def _unready(self, error: Callable[[_Watcher], StorageError | None]) -> None:
        # Together, synchronously: no watcher can register between the two on stale state.
        self._ready.clear()
        self._terminate_watchers(error)

    async def _relist(self) -> None:
        """A consistent, paginated list of the root; replaces the index and empties the window."""
        index: dict[str, bytes] = {}
        keys: list[str] = []
        revision = 0
        async with contextlib.aclosing(
            self.store.snapshot(self.root, page_size=self.page_size)
        ) as pages:
            async for page in pages:
                revision = page.revision  # every page is read at the same revision
                for key, obj in page.items:
                    index[key] = _encode(obj)
                    keys.append(key)
        keys.sort()  # etcd's byte order already; Python's str order is the same for UTF-8
        self._index, self._keys = index, keys
        self._rv = revision
        self._generation += 1
        self._events.clear()
        self._window_floor = revision
        self._ready.set()
        self._notify_progress()
        log.info("watch cache of %s primed at revision %d with %d objects",
                 self.root, revision, len(index))

    async def _follow(self) -> None:
        """Apply every event of the one etcd watch of the root, from the list's revision."""
        events = self.store.watch(self.root, resource_version=self._rv,
                                  options=WatchOptions(progress_notify=True))
        self.etcd_watch_count += 1
        try:
            async for event in events:
                if event.type == "BOOKMARK":
                    if event.revision > self._rv:
                        self._rv = event.revision
                        self._notify_progress()
                    continue
                if event.revision > self._rv:
                    # The previous revision is complete: let woken watchers drain their queues
                    # before more is dispatched (fairness without ever blocking on one).
                    await asyncio.sleep(0)
                self._apply(event)
        finally:
            self.etcd_watch_count -= 1
            await events.aclose()

    def _apply(self, event: WatchEvent) -> None:
        key = event.key
        if event.type == "DELETED":
            if self._index.pop(key, None) is not None:
                del self._keys[bisect.bisect_left(self._keys, key)]
        else:
            if key not in self._index:
                bisect.insort(self._keys, key)
            self._index[key] = _encode(event.object)
        self._rv = event.revision
        if len(self._events) >= self.window:
            self._window_floor = self._events.popleft().revision
        self._events.append(event)
        self._dispatch(event)
        self._notify_progress()

    def _notify_progress(self) -> None:
        self._progress.set()
        self._progress.clear()

    async def _wait_progress(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progress.wait(), timeout)

    async def _wait_ready(self) -> None:
        if self._ready.is_set():
            return
        try:
            await asyncio.wait_for(self._ready.wait(), self.block_timeout)
        except TimeoutError:
            raise UnavailableError(
                self.root, f"the watch cache of {self.root} is not ready yet (it is listing "
                "from etcd); try again shortly"
            ) from None

    # -- freshness

    async def _wait_fresh(self, key: str, minimum: int | None) -> int:
        """Wait until the index shows a state at some revision >= minimum (None: etcd's current
        revision, a consistent read) and return that revision. The caller must read the index
        right away, without awaiting anything in between.

        etcd 3.4 cannot be asked for a progress notification reliably, and the cache only
        moves with writes under its root, so a cache that is behind only because of writes
        elsewhere is proven current by storage's `watch_progress` (one read) instead of
        waited for. Raises TooLargeResourceVersionError after block_timeout (kube's
        waitUntilFreshAndBlock)."""
        if minimum is not None and self._rv >= minimum:
            return self._rv
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.block_timeout
        if minimum is None:
            minimum = await self._current_revision()
            if self._proven == (self._rv, self._generation, minimum):
                # proven current at this etcd revision already, and nothing was written since
                return minimum
        while True:
            if self._rv >= minimum:
                return self._rv
            if loop.time() >= deadline:
                raise TooLargeResourceVersionError(key, minimum, self._rv)
            revision, generation, count = self._rv, self._generation, len(self._index)
            progress = await self.store.watch_progress(self.root, since=revision)
            if self._rv >= minimum:
                return self._rv
            if (self._rv, self._generation) != (revision, generation):
                continue  # the cache moved meanwhile: look again
            if progress.unchanged(count) and progress.revision >= minimum:
                # remember the proof: until etcd or the cache moves, it holds without a scan
                self._proven = (revision, generation, progress.revision)
                return progress.revision
            # Changes are on their way to the cache (wait for the latest write), or only
            # deletes are, or etcd has not reached minimum yet (wait a while, look again).
            while (remaining := deadline - loop.time()) > 0:
                await self._wait_progress(min(remaining, _POLL_SLICE))
                if self._rv >= progress.latest_write:
                    break

    async def _current_revision(self) -> int:
        """etcd's current revision, read after this call began: callers that come while a
        read is under way share the next one (one read in flight at a time), so concurrent
        consistent reads cost one etcd round trip between them, not one each, and each
        still sees a revision read after it arrived."""
        if self._revision_read is None:
            self._revision_read = self._read_revision()
            return await asyncio.shield(self._revision_read)
        if self._revision_next is None:
            self._revision_next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._revision_next)

    def _read_revision(self) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.ensure_future(self.store.current_revision())
        future.add_done_callback(self._revision_done)
        return future

    def _revision_done(self, done: asyncio.Future[int]) -> None:
        waiting, self._revision_next = self._revision_next, None
        if waiting is None:
            self._revision_read = None
            if not done.cancelled():
                done.exception()  # retrieved by its callers
            return
        # the callers that came meanwhile get a read that begins now
        self._revision_read = self._read_revision()
        self._revision_read.add_done_callback(lambda f: _settle(waiting, f))

    async def _wait_etcd_reached(self, key: str, minimum: int) -> None:
        """Wait until etcd has reached revision minimum (TooLargeResourceVersionError after
        block_timeout). The cache need not have: events up to minimum are skipped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.block_timeout
        while self._rv < minimum:
            current = await self.store.current_revision()
            if current >= minimum:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TooLargeResourceVersionError(key, minimum, current)
            await self._wait_progress(min(remaining, _POLL_SLICE))

    # -- reads

    def _serves(self, key: str) -> bool:
        return key.startswith(self.root) and self._ready.is_set()

    async def get(
        self, key: str, *, resource_version: str = "", resource_version_match: str = ""
    ) -> Object:
        """The object at key (KeyNotFoundError if absent).

        resource_version "0" is served from the cache as it is; "N" (NotOlderThan, kube's GET)
        from the cache once it has reached N (TooLargeResourceVersionError after
        block_timeout); "" (most recent) from the cache once it has caught up with etcd's
        current revision (read after the call: a consistent read, as a consistent list from
        the cache), else by etcd after block_timeout; Exact by etcd, as is everything while
        the cache is not ready. The object returned is the caller's."""
        minimum = _parse_rv(resource_version) if resource_version else None
        consistent = resource_version == "" and resource_version_match == ""
        if (not self._serves(key) or (minimum is None and not consistent)
                or resource_version_match not in ("", "NotOlderThan")):
            return await self.store.get(
                key, resource_version=resource_version,
                resource_version_match=resource_version_match,
            )
        try:
            await self._wait_fresh(key, minimum)
        except TooLargeResourceVersionError:
            if not consistent:
                raise
            self.consistent_read_fallbacks += 1
            return await self.store.get(key)
        if not self._ready.is_set():  # a relist started meanwhile
            return await self.store.get(
                key, resource_version=resource_version,
                resource_version_match=resource_version_match,
            )
        encoded = self._index.get(key)
        if encoded is None:
            raise KeyNotFoundError(key, f"key not found: {key}")
        decoded: Object = orjson.loads(encoded)
        return decoded

    async def list(self, key_prefix: str, options: ListOptions) -> ListResult:
        """Objects under key_prefix (which ends with '/'), in key order.

        As kube-apiserver 1.34's cacher (with its snapshots: ListFromCacheSnapshot) and its
        delegator: "0" is served from the cache as it is (limit ignored); "N" NotOlderThan
        from the cache once it has reached N; "" (consistent) from the cache once it has
        caught up with etcd's current revision, else by etcd after block_timeout; limit
        applies to both, and the pages after the first (continue tokens), Exact "N" and a
        legacy exact "N" with limit are served from the cache's state at their revision
        while its window reaches back to it. Non-recursive lists, older revisions, and
        everything while the cache is not ready, are etcd's. Items are the caller's; the
        encodings are the cache's own."""
        if options.recursive and not key_prefix.endswith("/"):
            key_prefix += "/"
        minimum = _parse_rv(options.resource_version) if options.resource_version else None
        match = options.resource_version_match
        consistent = options.resource_version == "" and match == ""
        exact = match == "Exact" or (match == "" and bool(minimum) and options.limit > 0)
        if not options.recursive or not self._serves(key_prefix):
            return await self.store.list(key_prefix, options)
        if options.continue_token or (exact and minimum is not None):
            at_revision = await self._snapshot_list(key_prefix, options, minimum)
            return at_revision or await self.store.list(key_prefix, options)
        if (match not in ("", "NotOlderThan")
                or (options.resource_version and minimum is None)  # invalid: etcd says so
                or (not consistent and minimum is None)):  # NotOlderThan without a version
            return await self.store.list(key_prefix, options)

        limit = 0 if minimum == 0 else max(options.limit, 0)
        try:
            revision = await self._wait_fresh(key_prefix, minimum)
        except TooLargeResourceVersionError:
            if not consistent:
                raise
            self.consistent_read_fallbacks += 1
            return await self.store.list(key_prefix, options)
        if not self._ready.is_set():  # a relist started meanwhile
            return await self.store.list(key_prefix, options)
        if consistent:
            self.consistent_reads_from_cache += 1
        return self._list_index(key_prefix, options.predicate, limit, revision)

    def _shows(self, revision: int) -> bool:
        """Whether the index and the window can show the state at revision: from the
        window's floor to the cache's revision, or past it up to the etcd revision the cache
        was last proven current at (nothing under the root changed in between: a first page
        served at that proof's revision carries it in its continue token)."""
        reach = self._rv
        cache_rv, generation, proven = self._proven
        if (cache_rv, generation) == (self._rv, self._generation):
            reach = max(reach, proven)
        return self._window_floor <= revision <= reach

    async def _snapshot_list(self, prefix: str, options: ListOptions,
                             exact: int | None) -> ListResult | None:
        """A page of the state at the continue token's (or the exact) revision, from the
        index and the window's events after that revision (kube's snapshots); None when the
        cache cannot show that state (older than its window, ahead of it, compacted in
        etcd, or a consistent continue token), which etcd then serves (or refuses)."""
        start = prefix
        revision = exact
        if options.continue_token:
            start, revision = decode_continue(options.continue_token, prefix)
        if revision is None or revision <= 0 or not self._shows(revision):
            return None
        # A revision etcd has compacted is gone for clients, as kube's cache drops its
        # snapshots below it: one point read at revision tells (no objects are read). Every
        # revision from one found there stays there until a compaction: the finding holds
        # for a second (the pages of one list), so a compaction shows a second late at most.
        loop = asyncio.get_running_loop()
        checked, when = self._uncompacted
        if revision < checked or loop.time() - when > _UNCOMPACTED_SECONDS:
            try:
                await self.store.get(prefix, resource_version=str(revision),
                                     resource_version_match="Exact")
            except ExpiredError:
                return None
            except KeyNotFoundError:
                pass
            self._uncompacted = (revision, loop.time())
        if not self._shows(revision) or not self._ready.is_set():
            return None  # the cache moved on meanwhile
        # what changed under prefix after revision: each key's state at revision
        at: dict[str, bytes | None] = {}
        first = bisect.bisect_right(self._events, revision, key=_revision)
        for event in itertools.islice(self._events, first, None):
            if event.key in at or not event.key.startswith(prefix):
                continue
            if event.prev_object is None and event.type != "ADDED":
                return None  # its earlier state is not known here: etcd's
            at[event.key] = None if event.prev_object is None else orjson.dumps(
                event.prev_object)
        keys, index = self._keys, self._index
        lo, hi = bisect.bisect_left(keys, start), _key_range(keys, prefix)[1]
        end = keys[hi] if hi < len(keys) else None
        gone = sorted(k for k, v in at.items() if v is not None and k not in index
                      and k >= start and (end is None or k < end))  # deleted since
        candidates = heapq.merge(itertools.islice(keys, lo, hi), gone)
        predicate, limit = options.predicate, max(options.limit, 0)
        encoded: list[bytes] = []
        last = ""
        more = False
        for key in candidates:
            data = at[key] if key in at else index[key]
            if data is None or (predicate is not None and not predicate(orjson.loads(data))):
                continue
            if limit and len(encoded) >= limit:
                more = True
                break
            encoded.append(data)
            last = key
        items = _Decoded(encoded)
        if not more:
            return ListResult(items=items, resource_version=str(revision), encoded=encoded)
        token = encode_continue(last + "\x00", prefix, revision)
        remaining = None
        if predicate is None:  # what is left at revision: the keys after last, as then
            after = (hi - bisect.bisect_right(keys, last)) + sum(1 for k in gone if k > last)
            remaining = after - sum(1 for k, v in at.items() if v is None and k > last
                                    and k in index and (end is None or k < end))
        return ListResult(items=items, resource_version=str(revision), continue_token=token,
                          remaining_item_count=remaining, encoded=encoded)

    def _list_index(
        self, prefix: str, predicate: Predicate | None, limit: int, revision: int
    ) -> ListResult:
        """The objects under prefix from the index: their encodings as they are (decoded
        only for a predicate), and the items decoding them when read."""
        keys, index = self._keys, self._index
        lo, hi = _key_range(keys, prefix)
        encoded: list[bytes]
        if predicate is None:
            end = min(hi, lo + limit) if limit else hi
            encoded = [index[k] for k in keys[lo:end]]
            last = end - 1
        else:
            encoded = []
            last = lo - 1
            for i in range(lo, hi):
                data = index[keys[i]]
                if predicate(orjson.loads(data)):
                    encoded.append(data)
                    last = i
                    if limit and len(encoded) >= limit:
                        break
        items = _Decoded(encoded)
        if not limit or last >= hi - 1 or len(encoded) < limit:
            return ListResult(items=items, resource_version=str(revision), encoded=encoded)
        token = encode_continue(keys[last] + "\x00", prefix, revision)
        remaining = (hi - lo) - len(encoded) if predicate is None else None
        return ListResult(items=items, resource_version=str(revision), continue_token=token,
                          remaining_item_count=remaining, encoded=encoded)

    # -- writes and the rest: etcd's

    async def create(self, key: str, obj: Object) -> Object:
        """Store obj at key if absent (etcd)."""
        return await self.store.create(key, obj)

    async def delete(
        self,
        key: str,
        *,
        preconditions: Preconditions | None = None,
        validate: Callable[[Object], Awaitable[None]] | None = None,
        cached: Object | None = None,
    ) -> Object:
        """Delete key in storage, starting from cached or else the cache's copy (one
        transaction when it is current, as kube hands storage its cachedExistingObject)."""
        if cached is None and self.ready:
            encoded = self._index.get(key)
            cached = orjson.loads(encoded) if encoded is not None else None
        return await self.store.delete(key, preconditions=preconditions, validate=validate,
                                       cached=cached)

    async def guaranteed_update(
        self,
        key: str,
        update: UpdateFunc,
        *,
        ignore_not_found: bool = False,
        preconditions: Preconditions | None = None,
    ) -> Object:
        """Read-modify-write (etcd)."""
        return await self.store.guaranteed_update(
            key, update, ignore_not_found=ignore_not_found, preconditions=preconditions
        )

    async def current_revision(self) -> int:
        """Storage's current revision (a consistent read)."""
        return await self.store.current_revision()

    async def count(self, key_prefix: str) -> int:
        """How many keys are under key_prefix (storage's count)."""
        return await self.store.count(key_prefix)

    async def snapshot(
        self, key_prefix: str, *, page_size: int
    ) -> AsyncGenerator[SnapshotPage, None]:
        """Storage's snapshot of key_prefix (the cache's state is not a consistent read)."""
        async with contextlib.aclosing(
            self.store.snapshot(key_prefix, page_size=page_size)
        ) as pages:
            async for page in pages:
                yield page

    async def watch_progress(self, key_prefix: str, *, since: int) -> WatchProgress:
        """Storage's progress under key_prefix."""
        return await self.store.watch_progress(key_prefix, since=since)

    # -- watch

    def watch(
        self,
        key_prefix: str,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change under key_prefix (below the root), as kube-apiserver's cacher serves it:
        watch_to's events, as an async generator. Errors are raised when iterated; the stream
        ends when the watcher does not keep up, or the cache stops; closing the generator ends
        the watch. Events and objects are shared: do not mutate."""
        return iterate(lambda sink: self.watch_to(
            key_prefix, sink, resource_version=resource_version, predicate=predicate,
            options=options))

    async def watch_to(
        self,
        key_prefix: str,
        sink: WatchSink,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> WatchControl:
        """Every change under key_prefix (below the root), delivered into sink as the cache
        dispatches it, as kube-apiserver's cacher serves it (options.recursive=False: of the
        one key key_prefix). Returns the watch's control, paused: resume() it.

        resource_version None ("") or 0: ADDED for every current object that matches, then
        every change. N: every change after N, from the window then live, exactly once and in
        order; ExpiredError "too old resource version" when N is older than the window;
        N not reached by etcd yet: TooLargeResourceVersionError after block_timeout.
        send_initial_events (the watch-list protocol, NotOlderThan): ADDED for the state at a
        revision >= N (None: etcd's current revision, 0: the cache's), then, if
        allow_bookmarks, a BOOKMARK annotated k8s.io/initial-events-end at that revision, then
        every change. allow_bookmarks: a BOOKMARK ({metadata: {resourceVersion}}) at the
        cache's revision every bookmark_interval, also when nothing changed.
        options.progress_notify is not for the cache's clients and is ignored (as kube's).
        With a predicate, an object that stops matching is DELETED (its last matching state
        at the change's revision) and one that starts matching is ADDED.

        The sink is closed when the watcher falls behind (more than watcher_queue events held
        while paused), or the cache stops; with ExpiredError when the cache re-lists after
        compaction. Events and objects are shared: do not mutate."""
        options = options or WatchOptions()
        send_initial_events, allow_bookmarks = options.send_initial_events, options.allow_bookmarks
        key: str | None = None
        if options.recursive:
            prefix = key_prefix if key_prefix.endswith("/") else key_prefix + "/"
        else:
            # One key: registered at its directory, its events picked out by key.
            key, prefix = key_prefix, key_prefix.rsplit("/", 1)[0] + "/"
        if not prefix.startswith(self.root):
            raise ValueError(f"the watch cache of {self.root} cannot watch {key_prefix}")
        requested = resource_version or 0
        at = 0
        while True:
            await self._wait_ready()
            if send_initial_events:
                minimum = None if resource_version is None else requested
                at = await self._wait_fresh(prefix, minimum)
            elif requested > self._rv:
                await self._wait_etcd_reached(prefix, requested)
            if self._ready.is_set():
                break
        # From here to registration nothing awaits: the snapshot and the live stream meet
        # exactly at the cache's revision (or at the freshness proof's).
        initial: Iterator[WatchEvent] | None
        if send_initial_events or requested == 0:
            if not send_initial_events:
                at = self._rv
            initial = self._initial_events(prefix, key, predicate, at)
            floor = at
            if send_initial_events and allow_bookmarks:
                end_bookmark = WatchEvent(
                    "BOOKMARK", prefix,
                    {"metadata": {"resourceVersion": str(at),
                                  "annotations": {INITIAL_EVENTS_END_ANNOTATION: "true"}}},
                    None, at,
                )
                initial = itertools.chain(initial, (end_bookmark,))
        elif requested < self._window_floor:
            raise ExpiredError(
                prefix, f"too old resource version: {requested} ({self._window_floor})"
            )
        elif requested >= self._rv:
            initial, floor = None, requested  # etcd has reached it; the cache will
        else:
            first = bisect.bisect_right(self._events, requested, key=_revision)
            replay = list(itertools.islice(self._events, first, None))
            initial = _replay(replay, key or prefix, predicate, exact=key is not None)
            floor = self._rv

        loop = asyncio.get_running_loop()
        # What the client knows it has everything up to: where it asked to start, or the state
        # it is sent; a bookmark is due once the cache has passed it.
        known = floor if send_initial_events or requested == 0 else requested
        watcher = _Watcher(prefix, predicate, floor, known, self.watcher_queue,
                           allow_bookmarks, loop.time() + self.bookmark_interval, sink,
                           initial, self._unregister, key)
        self._register(watcher)
        return watcher

    def _initial_events(
        self, prefix: str, key: str | None, predicate: Predicate | None, revision: int
    ) -> Iterator[WatchEvent]:
        """ADDED for every object under prefix (or the one at key) now (captured now,
        converted lazily)."""
        index = self._index
        if key is not None:
            state = [(key, index[key])] if key in index else []
        else:
            lo, hi = _key_range(self._keys, prefix)
            state = [(k, index[k]) for k in self._keys[lo:hi]]
        return (
            WatchEvent("ADDED", key, obj, None, revision)
            for key, obj in ((k, orjson.loads(data)) for k, data in state)
            if predicate is None or predicate(obj)
        )

    def _register(self, watcher: _Watcher) -> None:
        groups = self._watchers.setdefault(watcher.prefix, {})
        groups.setdefault(watcher.predicate, {})[watcher] = None
        if watcher.allow_bookmarks:
            self._bookmark_watchers[watcher] = None
        self._watcher_count += 1

    def _unregister(self, watcher: _Watcher) -> None:
        groups = self._watchers.get(watcher.prefix)
        watchers = groups.get(watcher.predicate) if groups is not None else None
        if groups is None or watchers is None or watcher not in watchers:
            return
        del watchers[watcher]
        if not watchers:
            del groups[watcher.predicate]
            if not groups:
                del self._watchers[watcher.prefix]
        self._bookmark_watchers.pop(watcher, None)
        self._watcher_count -= 1

    def _terminate_watchers(self, error: Callable[[_Watcher], StorageError | None]) -> None:
        watchers = [w for groups in self._watchers.values() for ws in groups.values()
                    for w in ws]
        if watchers:
            log.info("watch cache of %s: ending %d watches", self.root, len(watchers))
        for watcher in watchers:
            self._unregister(watcher)
            watcher.end(error(watcher))

    def _dispatch(self, event: WatchEvent) -> None:
        """Hand event to every watcher it concerns, never waiting for one: what each
        selection sees of it is worked out once per distinct selector, and the same event
        object goes to every watcher of that selection (its encodings are shared)."""
        transitions: dict[str, WatchEvent] = {}
        behind: list[_Watcher] = []
        failed: list[_Watcher] = []
        revision, key = event.revision, event.key
        for prefix in _prefixes(self.root, key):
            groups = self._watchers.get(prefix)
            if not groups:
                continue
            for predicate, watchers in tuple(groups.items()):
                try:
                    delivered = _convert(event, predicate, transitions)
                except Exception as exc:
                    # One selector failing must not take the cache down for all.
                    log.warning("watch of %s: its selector failed on %s: %s; ending it",
                                prefix, key, exc)
                    failed.extend(watchers)
                    continue
                if delivered is None:
                    continue
                for watcher in tuple(watchers):
                    if revision <= watcher.floor or (
                        watcher.key is not None and watcher.key != key
                    ) or watcher.done:
                        continue
                    if not watcher.push(delivered):
                        behind.append(watcher)
        for watcher in behind:
            # kube-apiserver's cacheWatcher closes a watcher it cannot hand an event to.
            log.info("watch of %s has %d events queued and does not keep up: ending it so "
                     "the client watches again", watcher.prefix, len(watcher.buffer))
            self.terminated_watchers += 1
            self._unregister(watcher)
            watcher.end()
        for watcher in failed:
            self._unregister(watcher)
            watcher.end(StorageError(key, f"the watch's selector failed on {key}"))

    async def _send_bookmarks(self) -> None:
        """Every bookmark_interval per watcher that allows them, a BOOKMARK at the cache's
        revision, whether or not anything changed (cacher.go's dispatchEvents: a look every
        second, jittered, at the watchers whose bookmark is due).

        kube-apiserver's cache revision also moves with etcd's progress notifications, which
        etcd 3.4 does not send reliably: before a round of bookmarks, at most once per
        bookmark_interval (one read per resource, whatever the number of watchers), the cache
        proves with watch_progress that nothing changed under its root since its revision
        and moves to etcd's, so an idle watcher's bookmark carries a revision that etcd has
        not compacted yet."""
        loop = asyncio.get_running_loop()
        tick = min(1.0, self.bookmark_interval)
        caught_up = -math.inf
        while True:
            await asyncio.sleep(tick * (1 + _BOOKMARK_JITTER * random.random()))
            if not self._bookmark_watchers or not self._ready.is_set():
                continue
            now = loop.time()
            due = [w for w in self._bookmark_watchers if w.next_bookmark <= now]
            if not due:
                continue
            if now - caught_up >= self.bookmark_interval:
                caught_up = now
                await self._catch_up()
                now = loop.time()
            revision = self._rv
            bookmark: WatchEvent | None = None
            for watcher in due:
                if watcher not in self._bookmark_watchers:
                    continue  # it ended while the cache caught up
                watcher.next_bookmark = now + self.bookmark_interval
                if (revision < watcher.last_rv or watcher.done
                        or len(watcher.buffer) >= watcher.capacity):
                    continue  # not there yet, or no room: a bookmark is never worth a cut-off
                if bookmark is None:
                    bookmark = WatchEvent(
                        "BOOKMARK", self.root, {"metadata": {"resourceVersion": str(revision)}},
                        None, revision,
                    )
                watcher.push(bookmark)

    async def _catch_up(self) -> None:
        """Move the cache's revision to storage's current one if nothing under the root
        changed in between (what an etcd progress notification tells the cache)."""
        revision, generation, count = self._rv, self._generation, len(self._index)
        try:
            progress = await self.store.watch_progress(self.root, since=revision)
        except Exception as exc:
            # etcd unreachable: bookmarks go out at the revision the cache has
            log.debug("watch cache of %s could not look at etcd's progress: %s", self.root, exc)
            return
        if ((self._rv, self._generation) == (revision, generation) and self._ready.is_set()
                and progress.unchanged(count) and progress.revision > revision):
            self._rv = progress.revision
            self._notify_progress()


class _Decoded(Sequence[Object]):
    """A list's items, decoded from their encodings as they are read (each read decodes: the
    objects are the caller's)."""

    __slots__ = ("_encoded",)

    def __init__(self, encoded: list[bytes]) -> None:
        self._encoded = encoded

    def __len__(self) -> int:
        return len(self._encoded)

    @overload
    def __getitem__(self, index: int) -> Object: ...

    @overload
    def __getitem__(self, index: slice) -> list[Object]: ...

    def __getitem__(self, index: int | slice) -> Object | list[Object]:
        if isinstance(index, slice):
            return [orjson.loads(e) for e in self._encoded[index]]
        decoded: Object = orjson.loads(self._encoded[index])
        return decoded

    def __iter__(self) -> Iterator[Object]:
        return (orjson.loads(e) for e in self._encoded)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def _encode(obj: Object) -> bytes:
    """obj's JSON, held for as long as the object is cached: orjson's result keeps its
    buffer's whole capacity (4 KiB for a small object), an exact copy only what it holds."""
    return memoryview(orjson.dumps(obj)).tobytes()


def _settle(waiting: asyncio.Future[int], done: asyncio.Future[int]) -> None:
    if waiting.done():
        return
    if done.cancelled():
        waiting.cancel()
    elif done.exception() is not None:
        waiting.set_exception(done.exception())  # type: ignore[arg-type]
        waiting.exception()
    else:
        waiting.set_result(done.result())


def _parse_rv(resource_version: str) -> int | None:
    """The revision in resource_version, None when it is not a non-negative integer."""
    try:
        n = int(resource_version)
    except ValueError:
        return None
    return n if n >= 0 else None


def _revision(event: WatchEvent) -> int:
    return event.revision


def _key_range(keys: list[str], prefix: str) -> tuple[int, int]:
    """The slice of the sorted keys that start with prefix (which ends with '/')."""
    # Every key starting with "<p>/" sorts before "<p>0" ('0' follows '/').
    return bisect.bisect_left(keys, prefix), bisect.bisect_left(keys, prefix[:-1] + "0")


def _prefixes(root: str, key: str) -> Iterator[str]:
    """Every watch prefix that covers key: the root and each directory below it."""
    yield root
    start = len(root)
    while (slash := key.find("/", start)) != -1:
        yield key[: slash + 1]
        start = slash + 1


def _convert(
    event: WatchEvent, predicate: Predicate | None, transitions: dict[str, WatchEvent]
) -> WatchEvent | None:
    """What a watcher with predicate sees of event (cacheWatcher.convertToWatchEvent): the
    event itself, an ADDED/DELETED for an object entering/leaving its selection, or nothing.
    Transitions are made once per event (in transitions) and shared like the event."""
    if predicate is None:
        return event
    prev = event.prev_object
    if event.type == "DELETED":
        return event if prev is not None and predicate(prev) else None
    matches = predicate(event.object)
    matched = prev is not None and predicate(prev)
    if matches and (matched or event.type == "ADDED"):
        return event
    if matches:
        if "ADDED" not in transitions:
            transitions["ADDED"] = WatchEvent("ADDED", event.key, event.object, prev,
                                              event.revision)
        return transitions["ADDED"]
    if matched:
        assert prev is not None
        if "DELETED" not in transitions:
            # Its last state the watcher selected, at the revision it left the selection.
            transitions["DELETED"] = WatchEvent(
                "DELETED", event.key, with_resource_version(prev, event.revision), prev,
                event.revision,
            )
        return transitions["DELETED"]
    return None


def _replay(
    events: list[WatchEvent], prefix: str, predicate: Predicate | None, *, exact: bool = False
) -> Iterator[WatchEvent]:
    """The window's events under prefix (exact: at the key prefix), as a watcher with
    predicate sees them."""
    for event in events:
        if event.key == prefix if exact else event.key.startswith(prefix):
            delivered = _convert(event, predicate, {})
            if delivered is not None:
                yield delivered
