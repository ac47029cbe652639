"""Following a collection in kube-apiserver the way client-go's reflector and informer do.

`list_and_watch(client, path)` is an endless async iterator:

1. it lists the collection (consistently, in pages of PAGE_SIZE) and yields `Relisted(items,
   resource_version)`: the whole current state, to replace whatever the consumer held;
2. it watches from that list's resourceVersion and yields each ADDED / MODIFIED / DELETED
   `WatchEvent`, remembering the newest resourceVersion seen (bookmarks included);
3. when a watch ends (the server's timeoutSeconds, chosen at random between
   MIN_WATCH_SECONDS and twice that, as the reflector does, or a dropped connection) it
   watches again from the remembered resourceVersion, so no change is lost or seen twice;
4. when the server says that resourceVersion is too old (410 Gone / Expired) it lists again
   (step 1): changes in between show up as the difference between two `Relisted` states;
5. errors (kube-apiserver down, 403 for missing RBAC, ...) never end the iteration: each is
   passed to `on_error` (default: a warning in the log) and retried with back-off from
   BACKOFF_INITIAL up to BACKOFF_MAX seconds.

`Informer` keeps the objects of one such stream in memory, keyed by namespace/name, and calls
handlers with each change, so callers read the cluster's state without a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kext.kube.client import KubeClient, WatchEvent
from kext.kube.errors import KubeError, KubeStatusError, KubeTimeout

log = logging.getLogger(__name__)

PAGE_SIZE = 500
MIN_WATCH_SECONDS = 300
BACKOFF_INITIAL = 0.8
BACKOFF_MAX = 30.0
LIST_TIMEOUT = 60.0


@dataclass(frozen=True)
class Relisted:
    """The whole collection as one list returned it: replace what you hold with `items`."""

    items: list[dict[str, Any]]
    resource_version: str


async def list_collection(client: KubeClient, path: str,
                          params: Mapping[str, str] | None = None,
                          timeout: float = LIST_TIMEOUT, page_size: int = PAGE_SIZE) -> Relisted:
    """Every object of the collection at path, read in pages, and the list's resourceVersion.
    An expired continue token (410) restarts the list without pages, as client-go's pager."""
    items: list[dict[str, Any]] = []
    query = dict(params or {})
    query["limit"] = str(page_size)
    while True:
        try:
            page = await client.get(path, params=query, timeout=timeout)
        except KubeStatusError as error:
            if error.code != 410 or "continue" not in query:
                raise
            items, query = [], dict(params or {})
            continue
        items.extend(page.get("items") or [])
        meta = page.get("metadata") or {}
        if not meta.get("continue"):
            return Relisted(items, str(meta.get("resourceVersion") or ""))
        query["continue"] = str(meta["continue"])


async def list_and_watch(
    client: KubeClient, path: str, *, params: Mapping[str, str] | None = None,
    on_error: Callable[[KubeError], None] | None = None,
    min_watch_seconds: float = MIN_WATCH_SECONDS,
    backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
) -> AsyncIterator[Relisted | WatchEvent]:
    """List, then watch, for ever: see the module docstring. params (labelSelector,
    fieldSelector) apply to both the list and the watches."""
    report = on_error or (lambda error: log.warning("following %s: %s", path, error))
    loop = asyncio.get_running_loop()
    delay = backoff[0]
    resource_version = ""
    while True:
        if not resource_version:
            try:
                listed = await list_collection(client, path, params)
            except KubeError as error:
                report(error)
                await asyncio.sleep(_jitter(delay))
                delay = min(delay * 2, backoff[1])
                continue
            delay = backoff[0]
            resource_version = listed.resource_version
            yield listed
        timeout_seconds = int(min_watch_seconds * (1 + random.random()))
        opened = loop.time()
        failed = False
        try:
            async with client.watch(path, resource_version, params=params,
                                    timeout_seconds=timeout_seconds,
                                    allow_bookmarks=True) as events:
                async for event in events:
                    delay = backoff[0]
                    resource_version = event.resource_version or resource_version
                    if event.type != "BOOKMARK":
                        yield event
        except KubeStatusError as error:
            if error.code == 410:
                log.info("following %s: resourceVersion %s is too old; listing again",
                         path, resource_version)
                resource_version = ""
                continue
            report(error)
            failed = True
        except KubeTimeout as error:
            report(error)
        except KubeError as error:
            report(error)
            failed = True
        if failed or loop.time() - opened < 1.0:
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, backoff[1])


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name` of an object, or `name` for a cluster-scoped one (client-go's
    MetaNamespaceKeyFunc)."""
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    return f"{namespace}/{name}" if namespace else str(name)


Handler = Callable[[str, dict[str, Any] | None, dict[str, Any] | None], None]


class Informer:
    """The objects of one collection, kept current by list_and_watch. Handlers are called as
    handler(type, new, old) with type ADDED (old None), MODIFIED, or DELETED (new None); a
    relist calls them for the difference. Treat the objects as read-only."""

    def __init__(self, client: KubeClient, path: str, *,
                 params: Mapping[str, str] | None = None,
                 min_watch_seconds: float = MIN_WATCH_SECONDS,
                 backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX)) -> None:
        self.client = client
        self.path = path
        self.params = dict(params or {})
        self.last_error: KubeError | None = None
        self._min_watch_seconds = min_watch_seconds
        self._backoff = backoff
        self._objects: dict[str, dict[str, Any]] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._answered = asyncio.Event()  # a first list came back, or failed
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Informer({self.path!r}, {len(self._objects)} objects)"

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def start(self) -> None:
        """Start following (on the running loop)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def synced(self) -> bool:
        """Whether a first list has been received."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float) -> None:
        """Wait for the first list; after timeout raise the last error (or KubeTimeout)."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            if self.last_error is not None:
                raise self.last_error from None
            raise KubeTimeout(f"{self.path} was not listed within {timeout:g}s") from None

    async def wait_answered(self, timeout: float) -> None:
        """Wait until a first list came back or failed (then see synced and last_error);
        returns after timeout either way."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._answered.wait(), timeout)

    def get(self, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self._objects.get(f"{namespace}/{name}" if namespace else name)

    def items(self) -> list[dict[str, Any]]:
        return list(self._objects.values())

    async def _run(self) -> None:
        async for change in list_and_watch(
            self.client, self.path, params=self.params, on_error=self._failed,
            min_watch_seconds=self._min_watch_seconds, backoff=self._backoff,
        ):
            self.last_error = None
            if isinstance(change, Relisted):
                self._replace(change.items)
                self._synced.set()
                self._answered.set()
            else:
                self._apply(change.type, change.object)

    def _failed(self, error: KubeError) -> None:
        self.last_error = error
        self._answered.set()
        log.warning("following %s: %s", self.path, error)

    def _replace(self, items: list[dict[str, Any]]) -> None:
        fresh = {object_key(obj): obj for obj in items}
        old = self._objects
        self._objects = fresh
        for key, obj in old.items():
            if key not in fresh:
                self._notify("DELETED", None, obj)
        for key, obj in fresh.items():
            if key not in old:
                self._notify("ADDED", obj, None)
            elif _version(old[key]) != _version(obj):
                self._notify("MODIFIED", obj, old[key])

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        old = self._objects.get(key)
        if kind == "DELETED":
            self._objects.pop(key, None)
            self._notify("DELETED", None, old or obj)
        else:
            self._objects[key] = obj
            self._notify("ADDED" if old is None else "MODIFIED", obj, old)

    def _notify(self, kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        for handler in self._handlers:
            try:
                handler(kind, new, old)
            except Exception:
                log.exception("a handler of %s failed on %s", self.path, kind)


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _jitter(delay: float) -> float:
    return delay * (1 + random.random())
