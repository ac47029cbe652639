"""The watch cache: storage.Interface for one resource, served from memory (cf. k8s.io/apiserver
pkg/storage/cacher: cacher.go, watch_cache.go, cache_watcher.go).

A `Cacher` sits on another storage.Interface (etcd's, in kext) and depends on nothing else of
it. It lists its resource root once (`snapshot`), keeps every current object in an in-memory
index and the most recent events in a bounded window, and follows storage with ONE watch of
the whole root. From that it serves:

- lists and gets with resourceVersion "0" (any), "N" (not older than N) and "" (consistent:
  the cache first proves it has caught up with storage's current revision, with
  `watch_progress`, else storage answers);
- every watch of the resource: each watcher gets the same `WatchEvent` objects (so each event
  is encoded once, whatever the number of watchers), filtered by its key prefix and predicate;
  one that allows bookmarks also gets a BOOKMARK about every minute, changes or not.

Writes, exact-revision reads and continue tokens go to storage. Objects handed out are the
cache's own: consumers must treat them as immutable (the registry copies before it mutates).

A watcher's queue is bounded; a watcher that does not keep up is cut off (its stream ends, the
client watches again from the last resourceVersion it saw), so it never stalls the others.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import math
import random
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator

from kext.storage.continue_token import encode_continue
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
    WatchEvent,
    WatchOptions,
    WatchProgress,
)
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


class _Watcher:
    """One watch served by the cache: its selection, its bounded queue and where it stands."""

    __slots__ = (
        "allow_bookmarks",
        "buffer",
        "capacity",
        "done",
        "error",
        "floor",
        "key",
        "last_rv",
        "next_bookmark",
        "predicate",
        "prefix",
        "waiter",
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
        self.buffer: deque[WatchEvent] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.done = False
        self.error: StorageError | None = None

    def push(self, event: WatchEvent) -> None:
        self.buffer.append(event)
        self.last_rv = event.revision
        self.wake()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def end(self, error: StorageError | None = None) -> None:
        """Stop delivering: the stream ends (with error, if given) once the consumer looks."""
        self.done = True
        self.error = error
        self.buffer.clear()  # the client re-watches; what was queued is not worth the memory
        self.wake()


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

        # The state at revision _rv: key -> object, and the keys in order (for lists).
        self._index: dict[str, Object] = {}
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

        self._watchers: dict[str, dict[_Watcher, None]] = {}  # by key prefix
        self._bookmark_watchers: dict[_Watcher, None] = {}
        self._watcher_count = 0
        self._task: asyncio.Task[None] | None = None
        self._bookmark_task: asyncio.Task[None] | None = None

        self.etcd_watch_count = 0  # etcd watches held (1 while following etcd)
        self.terminated_watchers = 0  # watchers cut off because they did not keep up
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
        index: dict[str, Object] = {}
        keys: list[str] = []
        revision = 0
        async with contextlib.aclosing(
            self.store.snapshot(self.root, page_size=self.page_size)
        ) as pages:
            async for page in pages:
                revision = page.revision  # every page is read at the same revision
                for key, obj in page.items:
                    index[key] = obj
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
            self._index[key] = event.object
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
            minimum = await self.store.current_revision()
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
        block_timeout); "" (most recent) and Exact by etcd, as is everything while the cache
        is not ready. The object returned is the cache's own: do not mutate it."""
        minimum = _parse_rv(resource_version)
        if (minimum is None or resource_version_match not in ("", "NotOlderThan")
                or not self._serves(key)):
            return await self.store.get(
                key, resource_version=resource_version,
                resource_version_match=resource_version_match,
            )
        await self._wait_fresh(key, minimum)
        if not self._ready.is_set():  # a relist started meanwhile
            return await self.store.get(
                key, resource_version=resource_version,
                resource_version_match=resource_version_match,
            )
        obj = self._index.get(key)
        if obj is None:
            raise KeyNotFoundError(key, f"key not found: {key}")
        return obj

    async def list(self, key_prefix: str, options: ListOptions) -> ListResult:
        """Objects under key_prefix (which ends with '/'), in key order.

        As kube-apiserver's cacher and its delegator: "0" is served from the cache as it is
        (limit ignored); "N" NotOlderThan from the cache once it has reached N (limit applies;
        the continue token then reads etcd at that revision); "" (consistent) from the cache
        once it has caught up with etcd's current revision, else by etcd after block_timeout.
        Exact, continue tokens, limit with "" or with a legacy "N", non-recursive lists, and
        everything while the cache is not ready, are etcd's. Items are the cache's own
        objects: do not mutate them."""
        if options.recursive and not key_prefix.endswith("/"):
            key_prefix += "/"
        minimum = _parse_rv(options.resource_version) if options.resource_version else None
        match = options.resource_version_match
        consistent = options.resource_version == "" and match == ""
        if (not options.recursive or options.continue_token or not self._serves(key_prefix)
                or match not in ("", "NotOlderThan")
                or (options.resource_version and minimum is None)  # invalid: etcd says so
                or (consistent and options.limit > 0)
                or (not consistent and minimum is None)  # NotOlderThan without a version
                or (match == "" and minimum and options.limit > 0)):  # legacy exact
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

    def _list_index(
        self, prefix: str, predicate: Predicate | None, limit: int, revision: int
    ) -> ListResult:
        keys, index = self._keys, self._index
        lo, hi = _key_range(keys, prefix)
        items: list[Object] = []
        last = lo - 1
        for i in range(lo, hi):
            obj = index[keys[i]]
            if predicate is None or predicate(obj):
                items.append(obj)
                last = i
                if limit and len(items) >= limit:
                    break
        if not limit or last >= hi - 1 or len(items) < limit:
            return ListResult(items=items, resource_version=str(revision))
        token = encode_continue(keys[last] + "\x00", prefix, revision)
        remaining = (hi - lo) - len(items) if predicate is None else None
        return ListResult(items=items, resource_version=str(revision), continue_token=token,
                          remaining_item_count=remaining)

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
            cached = self._index.get(key)
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

    async def watch(
        self,
        key_prefix: str,
        *,
        resource_version: int | None,
        predicate: Predicate | None = None,
        options: WatchOptions | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change under key_prefix (below the root), as kube-apiserver's cacher serves it
        (options.recursive=False: of the one key key_prefix).

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

        Errors are raised when iterated. The stream ends when the watcher does not keep up, or
        the cache stops; ExpiredError ends it when the cache re-lists after compaction.
        Closing the generator ends the watch. Events and objects are shared: do not mutate."""
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
        initial: Iterable[WatchEvent]
        end_bookmark = None
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
        elif requested < self._window_floor:
            raise ExpiredError(
                prefix, f"too old resource version: {requested} ({self._window_floor})"
            )
        elif requested >= self._rv:
            initial, floor = (), requested  # etcd has reached it; the cache will
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
                           allow_bookmarks, loop.time() + self.bookmark_interval, key)
        self._register(watcher)
        try:
            for event in initial:
                if watcher.done:
                    break
                watcher.last_rv = max(watcher.last_rv, event.revision)
                yield event
            if end_bookmark is not None and not watcher.done:
                yield end_bookmark
            while True:
                if watcher.buffer:
                    yield watcher.buffer.popleft()
                    continue
                if watcher.error is not None:
                    raise watcher.error
                if watcher.done:
                    return
                watcher.waiter = loop.create_future()
                try:
                    await watcher.waiter
                finally:
                    watcher.waiter = None
        finally:
            self._unregister(watcher)

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
            for key, obj in state
            if predicate is None or predicate(obj)
        )

    def _register(self, watcher: _Watcher) -> None:
        self._watchers.setdefault(watcher.prefix, {})[watcher] = None
        if watcher.allow_bookmarks:
            self._bookmark_watchers[watcher] = None
        self._watcher_count += 1

    def _unregister(self, watcher: _Watcher) -> None:
        watchers = self._watchers.get(watcher.prefix)
        if watchers is None or watcher not in watchers:
            return
        del watchers[watcher]
        if not watchers:
            del self._watchers[watcher.prefix]
        self._bookmark_watchers.pop(watcher, None)
        self._watcher_count -= 1

    def _terminate_watchers(self, error: Callable[[_Watcher], StorageError | None]) -> None:
        watchers = [w for ws in self._watchers.values() for w in ws]
        if watchers:
            log.info("watch cache of %s: ending %d watches", self.root, len(watchers))
        for watcher in watchers:
            self._unregister(watcher)
            watcher.end(error(watcher))

    def _dispatch(self, event: WatchEvent) -> None:
        """Queue event for every watcher it concerns, never waiting for one."""
        transitions: dict[str, WatchEvent] = {}
        behind: list[_Watcher] = []
        failed: list[_Watcher] = []
        for prefix in _prefixes(self.root, event.key):
            watchers = self._watchers.get(prefix)
            if not watchers:
                continue
            for watcher in watchers:
                if event.revision <= watcher.floor or (
                    watcher.key is not None and watcher.key != event.key
                ):
                    continue
                try:
                    delivered = _convert(event, watcher.predicate, transitions)
                except Exception as exc:
                    # One watcher's selector failing must not take the cache down for all.
                    log.warning("watch of %s: its selector failed on %s: %s; ending it",
                                watcher.prefix, event.key, exc)
                    failed.append(watcher)
                    continue
                if delivered is None:
                    continue
                if len(watcher.buffer) >= watcher.capacity:
                    behind.append(watcher)
                    continue
                watcher.push(delivered)
        for watcher in behind:
            # kube-apiserver's cacheWatcher closes a watcher it cannot hand an event to.
            log.info("watch of %s has %d events queued and does not keep up: ending it so "
                     "the client watches again", watcher.prefix, len(watcher.buffer))
            self.terminated_watchers += 1
            self._unregister(watcher)
            watcher.end()
        for watcher in failed:
            self._unregister(watcher)
            watcher.end(StorageError(event.key, f"the watch's selector failed on {event.key}"))

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
                if revision < watcher.last_rv or len(watcher.buffer) >= watcher.capacity:
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
