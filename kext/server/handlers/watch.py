"""watch: a chunked stream of newline-delimited JSON watch events
(cf. apiserver pkg/endpoints/handlers/watch.go). Events come from the watch cache in the
storage version; each is converted once per version and encoded once per representation, and
the same bytes go to every watcher that wants them. A conversion that fails ends the stream
(the client re-watches), as kube's watch ends when an event cannot be encoded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from kext.api import errors
from kext.api.table import parse_include_object, partial_object_metadata, table_convertor
from kext.metrics import Metrics, WatchEventCounts
from kext.registry.store import WatchEvent
from kext.server.handlers.scope import (
    Scope,
    parse_resource_version,
    selection,
    timeout_seconds,
)
from kext.server.negotiation import Representation, Target, negotiate
from kext.server.request import APIRequest, StreamResponse

log = logging.getLogger(__name__)

# kube-apiserver picks a random timeout in [min, 2*min) so watches do not all end at once.
MIN_REQUEST_TIMEOUT = 1800.0


def _bool(request: APIRequest, name: str) -> bool:
    return request.param(name).lower() in ("true", "1")


def _options_invalid(message: str, field: str) -> errors.StatusError:
    return errors.invalid("meta.k8s.io", "ListOptions", "", [
        errors.Cause("FieldValueForbidden", message, field)
    ])


async def watch(request: APIRequest, scope: Scope, metrics: Metrics) -> StreamResponse:
    target = negotiate(request.header("accept"))
    encoder = _Encoder(target, scope, request)
    selected = selection(request, scope, name=scope.name)
    rv_raw = parse_resource_version(request.param("resourceVersion"))
    match = request.param("resourceVersionMatch")
    send_initial = request.param("sendInitialEvents")
    allow_bookmarks = _bool(request, "allowWatchBookmarks")
    if send_initial:
        if match != "NotOlderThan":
            raise _options_invalid(
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                "resourceVersionMatch",
            )
        if not allow_bookmarks:
            raise _options_invalid(
                "sendInitialEvents requires setting allowWatchBookmarks to true",
                "allowWatchBookmarks",
            )
    elif match:
        raise _options_invalid(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            "resourceVersionMatch",
        )
    # As kube's handleWatch: none (or zero) is a random timeout of 30-60 minutes; a negative
    # one has already passed, so the watch ends at once.
    timeout = float(timeout_seconds(request) or 0)
    if timeout == 0:
        timeout = MIN_REQUEST_TIMEOUT * (1 + random.random())
    resource_version = int(rv_raw) if rv_raw else None
    events = scope.store.watch(
        scope.namespace, resource_version, selected,
        send_initial_events=send_initial.lower() == "true",
        allow_bookmarks=allow_bookmarks,
    )
    # Start the watch before answering so a watch that cannot start is an HTTP error. A
    # resourceVersion the cache has not reached makes it wait for etcd (bounded): give that
    # wait the time to end in a 504 before the stream starts.
    ahead = resource_version is not None and resource_version > scope.store.cache_revision
    first = await _first_event(events, 4.0 if ahead else 0.05)
    recorder = metrics.watch_event_counts(scope.group, scope.version.name, scope.resource)
    return StreamResponse(
        _frames(first, events, encoder, recorder, time.monotonic() + timeout),
        content_type="application/json",
    )


async def _first_event(events: AsyncGenerator[WatchEvent, None],
                       patience: float) -> asyncio.Task[WatchEvent]:
    """Begin iterating: a watch that cannot start (revision ahead of etcd, cache not ready)
    fails here as an HTTP error; a revision too old becomes the stream's one ERROR event, as
    kube's cache answers it. Otherwise the pending first event is handed to the stream."""
    task = asyncio.ensure_future(anext(events))
    done, _ = await asyncio.wait({task}, timeout=patience)
    if done and task.exception() is not None:
        exc = task.exception()
        if isinstance(exc, StopAsyncIteration) or (
            isinstance(exc, errors.StatusError) and exc.reason == "Expired"
        ):
            return task
        await events.aclose()
        assert exc is not None
        raise exc
    return task


async def _frames(first: asyncio.Task[WatchEvent], events: AsyncGenerator[WatchEvent, None],
                  encoder: _Encoder, recorder: WatchEventCounts,
                  deadline: float) -> AsyncGenerator[bytes, None]:
    """The stream's chunks: one encoded event each, an ERROR event for a storage failure, and
    an end at the timeout. Each is recorded (apiserver_watch_events_total and _sizes, by the
    watched group, version and resource, cf. watchEventMetricsRecorder) as it is handed to
    the connection."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    # One timer for the whole watch, not one per event (with 1,000 watchers, per-event tasks
    # and timers were most of kext's time): at the deadline it flags the watch, and cancels
    # the task only while the task waits for the next event.
    state = {"waiting": False, "expired": False}

    def expire() -> None:
        state["expired"] = True
        if state["waiting"] and task is not None:
            task.cancel()

    timer = loop.call_at(loop.time() + (deadline - time.monotonic()), expire)
    try:
        done, _ = await asyncio.wait({first}, timeout=max(deadline - time.monotonic(), 0))
        if not done:
            return
        event = first.result()
        while True:
            frame = encoder.encode_now(event)
            if frame is None:
                try:
                    frame = await encoder.encode(event)
                except errors.StatusError as exc:
                    log.warning("watch of %s ended: %s", encoder.api_version, exc.message)
                    return
            recorder.record(len(frame))
            yield frame
            if state["expired"]:
                return
            state["waiting"] = True
            try:
                event = await anext(events)
            except asyncio.CancelledError:
                if not state["expired"] or task is None:
                    raise
                task.uncancel()  # our own timeout, not a cancelled request
                return
            finally:
                state["waiting"] = False
    except StopAsyncIteration:
        return  # the cache ended this watcher (slow, or shutting down): the client re-watches
    except errors.StatusError as exc:
        frame = orjson.dumps({"type": "ERROR", "object": exc.status()}) + b"\n"
        recorder.record(len(frame))
        yield frame
    finally:
        timer.cancel()
        if not first.done():
            first.cancel()
            # the generator must be idle before it can be closed
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await first
        await events.aclose()


class _Encoder:
    """Encodes events for one watcher's representation, reusing the event's shared memo."""

    def __init__(self, target: Target, scope: Scope, request: APIRequest) -> None:
        self.target = target
        self.scope = scope
        self.api_version = f"{scope.group}/{scope.version.name}"
        self.kind = scope.store.kind
        self.include_object = parse_include_object(request.param("includeObject"))
        self.memo_key = f"{target.representation.value}:{target.meta_version}:" \
                        f"{self.api_version}:{self.include_object}"
        self.headers_sent = False

    def encode_now(self, event: WatchEvent) -> bytes | None:
        """The event's frame when it needs no wait for a conversion (None otherwise)."""
        if event.type == "BOOKMARK":
            return self._bookmark(event)
        if self.target.representation is not Representation.TABLE:
            frame = event.encoded.get(self.memo_key)
            if frame is not None:
                return frame
        obj = self.scope.store.event_object_now(event, self.scope.version.name)
        return None if obj is None else self._frame(event, obj)

    async def encode(self, event: WatchEvent) -> bytes:
        """The event's frame, its object converted first (500 StatusError when that fails)."""
        obj = await self.scope.store.event_object(event, self.scope.version.name)
        return self._frame(event, obj)

    def _frame(self, event: WatchEvent, obj: dict[str, Any]) -> bytes:
        if self.target.representation is Representation.TABLE:
            # Tables carry column headers on the first event only, so they are per watcher.
            return self._table(event, obj)
        frame = event.encoded.get(self.memo_key)
        if frame is None:
            if self.target.representation is Representation.PARTIAL_OBJECT_METADATA:
                obj = partial_object_metadata(obj, self.target.meta_version)
            frame = orjson.dumps({"type": event.type, "object": obj}) + b"\n"
            event.encoded[self.memo_key] = frame
        return frame

    def _table(self, event: WatchEvent, obj: dict[str, Any]) -> bytes:
        table = table_convertor(self.scope.version).table(
            [obj], include_object=self.include_object, no_headers=self.headers_sent,
            meta_version=self.target.meta_version,
        )
        self.headers_sent = True
        return orjson.dumps({"type": event.type, "object": table}) + b"\n"

    def _bookmark(self, event: WatchEvent) -> bytes:
        metadata: dict[str, Any] = dict(event.object.get("metadata") or {})
        metadata.setdefault("resourceVersion", str(event.revision))
        obj = {"kind": self.kind, "apiVersion": self.api_version, "metadata": metadata}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"
