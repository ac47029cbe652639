"""Watches delivered into a WatchSink (storage/interface.py), and back.

`watch_to` starts a watch of any storage.Interface into a sink: storages that deliver into
sinks themselves (the watch cache) do so with no task per event; any other is pumped from
its `watch()` generator by one task. `iterate` is the other way round: the events a sink
would get, as an async generator, for consumers that pull (the storage Interface's
`watch()`, tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from kext.storage.interface import (
    Interface,
    Predicate,
    WatchControl,
    WatchEvent,
    WatchOptions,
    WatchSink,
)

# Starts a watch into the sink it is given and returns its (paused) control.
StartWatch = Callable[[WatchSink], Awaitable[WatchControl]]


async def watch_to(storage: Interface, key_prefix: str, sink: WatchSink, *,
                   resource_version: int | None, predicate: Predicate | None = None,
                   options: WatchOptions | None = None) -> WatchControl:
    """Start a watch of storage into sink (paused: resume() it); what storage.watch() would
    raise on its first iteration is raised here when storage delivers into sinks itself,
    and handed to sink.close otherwise."""
    own: Any = getattr(storage, "watch_to", None)
    if own is not None:
        control: WatchControl = await own(key_prefix, sink, resource_version=resource_version,
                                          predicate=predicate, options=options)
        return control
    events = storage.watch(key_prefix, resource_version=resource_version, predicate=predicate,
                           options=options)
    return _Pump(events, sink)


class _Pump:
    """A WatchControl over a watch generator: one task feeds the sink."""

    def __init__(self, events: AsyncGenerator[WatchEvent, None], sink: WatchSink) -> None:
        self.events, self.sink = events, sink
        self.paused = True
        self.task: asyncio.Task[None] | None = None
        self.resumed: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())
        elif self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        else:
            self.task = asyncio.ensure_future(self.events.aclose())

    async def _run(self) -> None:
        error: Exception | None = None
        try:
            async for event in self.events:
                while self.paused:
                    self.resumed = asyncio.get_running_loop().create_future()
                    await self.resumed
                self.sink.send(event)
        except asyncio.CancelledError:
            await self.events.aclose()
            return
        except Exception as exc:
            error = exc
        finally:
            await self.events.aclose()
        self.sink.close(error)


class _Queue:
    """A WatchSink that holds what it is sent for a consumer that pulls: it holds one event
    at a time and pauses the watch meanwhile, so the watch's own bound applies."""

    def __init__(self) -> None:
        self.queue: deque[WatchEvent] = deque()
        self.control: WatchControl | None = None
        self.closed = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None

    def send(self, event: WatchEvent) -> None:
        self.queue.append(event)
        if self.control is not None:
            self.control.pause()
        self._wake()

    def close(self, error: Exception | None) -> None:
        self.closed, self.error = True, error
        self.queue.clear()  # the client re-watches; what was held is not worth the memory
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def iterate(start: StartWatch) -> AsyncGenerator[WatchEvent, None]:
    """The events a watch started by start delivers, as an async generator: errors starting
    it are raised at the first iteration, an error ending it once what came before it was
    consumed; closing the generator stops the watch."""
    sink = _Queue()
    control = await start(sink)
    sink.control = control
    loop = asyncio.get_running_loop()
    try:
        control.resume()
        while True:
            if sink.queue:
                event = sink.queue.popleft()
                yield event
                if not sink.queue and not sink.closed:
                    control.resume()
                continue
            if sink.closed:
                if sink.error is not None:
                    raise sink.error
                return
            sink.waiter = loop.create_future()
            try:
                await sink.waiter
            finally:
                sink.waiter = None
    finally:
        with contextlib.suppress(Exception):
            control.stop()
