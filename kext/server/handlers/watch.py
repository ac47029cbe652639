"""watch: a chunked stream of newline-delimited JSON watch events
(cf. apiserver pkg/endpoints/handlers/watch.go). Events come from the watch cache; each is
encoded once per representation and the same bytes go to every watcher that wants them."""

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
from kext.server.handlers.scope import INTEGER, Scope, parse_resource_version, selection
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
    timeout_raw = request.param("timeoutSeconds")
    if timeout_raw and not INTEGER.fullmatch(timeout_raw):
        raise errors.bad_request(f"timeoutSeconds: invalid value {timeout_raw!r}")
    timeout = float(timeout_raw or 0)
    if timeout <= 0:  # as kube: no (or zero) timeout is a random one of 30-60 minutes
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
    A storage failure is an ERROR event; the stream ends at the watch's timeout (one timer
    per watch), when the cache ends the watch, or when the client goes away."""

    def __init__(self, encoder: _Encoder, recorder: WatchEventCounts, timeout: float) -> None:
        self.encoder, self.recorder, self.timeout = encoder, recorder, timeout
        self.control: WatchControl | None = None
        self.writer: ChunkWriter | None = None
        self.held: list[bytes] = []  # what came before the connection was there
        self.ended = False
        self.done: asyncio.Future[None] | None = None

    def send(self, event: WatchEvent) -> None:
        if not self.ended:
            self._write(self.encoder.encode(event))

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
        timer = loop.call_later(self.timeout, self.close, None)
        control = self.control
        try:
            if control is not None:
                writer.set_producer(control)
                control.resume()  # the initial events, then each change as it happens
            await self.done
        finally:
            timer.cancel()
            self.ended = True
            if control is not None:
                control.stop()


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

    def encode(self, event: WatchEvent) -> bytes:
        if event.type == "BOOKMARK":
            return self._bookmark(event)
        if self.target.representation is Representation.TABLE:
            # Tables carry column headers on the first event only, so they are per watcher.
            return self._table(event)
        frame = event.encoded.get(self.memo_key)
        if frame is None:
            obj = self.scope.store.to_version(event.object, self.scope.version.name)
            if self.target.representation is Representation.PARTIAL_OBJECT_METADATA:
                obj = partial_object_metadata(obj, self.target.meta_version)
            frame = orjson.dumps({"type": event.type, "object": obj}) + b"\n"
            event.encoded[self.memo_key] = frame
        return frame

    def _table(self, event: WatchEvent) -> bytes:
        obj = self.scope.store.to_version(event.object, self.scope.version.name)
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
