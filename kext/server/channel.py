"""The local connection between kext's supervisor and one of its workers (a socket pair the
supervisor makes when it starts the worker): JSON messages, one a line, either side calling
the other (`await call(method, params)`) or telling it something (`notify`).

It carries only what the processes need of each other (the worker is serving; the samples of
its metrics; the sum of every worker's), never a request of an API client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# A method: its params in, its result out (both JSON values).
Method = Callable[[Any], Awaitable[Any]]

# A line may carry every metric sample of a worker: far more than asyncio's 64 KiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CALL_TIMEOUT = 5.0  # seconds a call waits for its answer


class ChannelClosed(ConnectionError):
    """The other process closed the channel (it exited), before or while a call waited."""


class RemoteError(Exception):
    """The other process's method failed; the message is its error."""


class Channel:
    """One end of the channel. `methods` answer the other side's calls; `closed` is set once
    the other side has gone (end of file), and every call still waiting fails then."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 methods: Mapping[str, Method]) -> None:
        self._reader = reader
        self._writer = writer
        self._methods = dict(methods)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()
        self._reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, sock: socket.socket, methods: Mapping[str, Method]) -> Channel:
        """A channel on a connected stream socket (it becomes the channel's)."""
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=MAX_MESSAGE_BYTES)
        return cls(reader, writer, methods)

    async def call(self, method: str, params: Any = None, timeout: float = CALL_TIMEOUT) -> Any:
        """The other side's answer to method(params). Raises ChannelClosed, TimeoutError, or
        RemoteError when its method failed."""
        if self.closed.is_set():
            raise ChannelClosed("the channel is closed")
        call_id = next(self._ids)
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = answer
        try:
            self._send({"id": call_id, "method": method, "params": params})
            return await asyncio.wait_for(answer, timeout)
        finally:
            self._waiting.pop(call_id, None)

    def notify(self, method: str, params: Any = None) -> None:
        """Tell the other side something; no answer comes back."""
        if not self.closed.is_set():
            self._send({"method": method, "params": params})

    def close(self) -> None:
        self._writer.close()

    def _send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if "method" in message:
                    task = asyncio.get_running_loop().create_task(self._answer(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    continue
                answer = self._waiting.get(message.get("id"))
                if answer is None or answer.done():
                    continue  # its caller stopped waiting
                if "error" in message:
                    answer.set_exception(RemoteError(message["error"]))
                else:
                    answer.set_result(message.get("result"))
        except (ConnectionError, ValueError) as exc:
            log.warning("the channel to the other kext process broke: %s", exc)
        finally:
            self.closed.set()
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_exception(ChannelClosed("the other kext process went away"))
            self._writer.close()

    async def _answer(self, message: dict[str, Any]) -> None:
        method = self._methods.get(message["method"])
        call_id = message.get("id")
        try:
            if method is None:
                raise LookupError(f"no method {message['method']!r}")
            result = await method(message.get("params"))
        except Exception as exc:
            if call_id is None:
                log.warning("%s from the other kext process failed: %s", message["method"], exc)
            else:
                with contextlib.suppress(ConnectionError):
                    self._send({"id": call_id, "error": f"{type(exc).__name__}: {exc}"})
            return
        if call_id is not None and not self.closed.is_set():
            with contextlib.suppress(ConnectionError):
                self._send({"id": call_id, "result": result})
