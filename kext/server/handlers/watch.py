"""watch: a chunked stream of newline-delimited JSON watch events
(cf. apiserver pkg/endpoints/handlers/watch.go). Events come from the watch cache in the
storage version; each is converted once per version and encoded once per representation, and
the same bytes go to every watcher that wants them. A conversion that fails ends the stream
(the client re-watches), as kube's watch ends when an event cannot be encoded."""

from __future__ import annotations

import asyncio
import logging
import random
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
from kext.server.request import APIRequest, ChunkWriter, StreamResponse
from kext.storage.interface import WatchControl

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
    recorder = metrics.watch_event_counts(scope.group, scope.version.name, scope.resource)
    stream = _WatchStream(encoder, recorder, timeout)
    # Start the watch before answering, so a watch that cannot start (a revision etcd has
    # not reached after the wait, a cache not ready) is an HTTP error; a revision too old is
    # the stream's one ERROR event, as kube's cache answers it.
    try:
        stream.control = await scope.store.watch_to(
            scope.namespace, resource_version, selected, stream,
            send_initial_events=send_initial.lower() == "true",
            allow_bookmarks=allow_bookmarks,
        )
    except errors.StatusError as exc:
        if exc.reason != "Expired":
            raise
        stream.close(exc)
    return StreamResponse(stream.run, content_type="application/json")


class _WatchStream:
    """One watch's stream: the watch cache sends each event here as it dispatches it, and it
    goes out at once as the connection's next chunk: an encoding shared by every watcher of
    the same representation, recorded (apiserver_watch_events_total and _sizes, by the
    watched group, version and resource, cf. watchEventMetricsRecorder) as it is written.
    An event whose conversion must wait (a conversion webhook) pauses the watch until it is
    written, so the order holds; a conversion that fails ends the stream, a storage failure
    is an ERROR event; the stream ends at the watch's timeout (one timer per watch), when the
    cache ends the watch, or when the client goes away. It is the connection's producer:
    the watch is paused while the connection pushes back or a conversion runs."""

    def __init__(self, encoder: _Encoder, recorder: WatchEventCounts, timeout: float) -> None:
        self.encoder, self.recorder, self.timeout = encoder, recorder, timeout
        self.control: WatchControl | None = None
        self.writer: ChunkWriter | None = None
        self.held: list[bytes] = []  # what came before the connection was there
        self.ended = False
        self.done: asyncio.Future[None] | None = None
        self.connection_paused = False
        self.converting: asyncio.Task[None] | None = None

    def send(self, event: WatchEvent) -> None:
        if self.ended:
            return
        frame = self.encoder.encode_now(event)
        if frame is not None:
            self._write(frame)
            return
        if self.control is not None:
            self.control.pause()  # the cache holds what follows, bounded, until it is out
        self.converting = asyncio.ensure_future(self._convert(event))

    async def _convert(self, event: WatchEvent) -> None:
        try:
            frame = await self.encoder.encode(event)
        except errors.StatusError as exc:
            log.warning("watch of %s ended: %s", self.encoder.api_version, exc.message)
            self.close(None)
            return
        finally:
            self.converting = None
        self._write(frame)
        if not self.connection_paused and self.control is not None and not self.ended:
            self.control.resume()

    def _write(self, frame: bytes) -> None:
        self.recorder.record(len(frame))
        if self.writer is None:
            self.held.append(frame)
        else:
            self.writer.write(frame)

    def close(self, error: Exception | None) -> None:
        if self.ended:
            return
        if isinstance(error, errors.StatusError):
            self._write(orjson.dumps({"type": "ERROR", "object": error.status()}) + b"\n")
        elif error is not None:
            log.warning("watch ended by an error: %s", error)
        self.ended = True
        if self.done is not None and not self.done.done():
            self.done.set_result(None)

    # -- the connection's producer

    def pause(self) -> None:
        self.connection_paused = True
        if self.control is not None:
            self.control.pause()

    def resume(self) -> None:
        self.connection_paused = False
        if self.control is not None and self.converting is None and not self.ended:
            self.control.resume()

    async def run(self, writer: ChunkWriter) -> None:
        """Write the stream to writer until it ends."""
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self.writer = writer
        for frame in self.held:
            writer.write(frame)
        self.held.clear()
        if self.ended:
            return
        timer = loop.call_later(max(self.timeout, 0), self.close, None)
        try:
            writer.set_producer(self)
            self.resume()  # the initial events, then each change as it happens
            await self.done
        finally:
            timer.cancel()
            self.ended = True
            if self.converting is not None:
                self.converting.cancel()
            if self.control is not None:
                self.control.stop()


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
