"""One worker of several (serving.workers > 1): an API server of its own (etcd client, watch
caches, stores, filters, metrics) on the listening socket its supervisor inherited to it.

    python -m kext.server.worker --index I --listen-fd N --channel-fd M < settings.json

The supervisor (kext/server/supervisor.py) writes the worker's settings to its standard input:
the completed config (kext/server/config.py) with the worker's share of the in-flight limits,
as JSON (plain data, restored by its type hints). The channel (kext/server/channel.py) is how
the worker tells the supervisor it is serving, and how /metrics gets the sum across workers.
SIGTERM (or the supervisor going away) stops the worker as it stops a single kext."""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections.abc
import dataclasses
import json
import logging
import os
import socket
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kext.api import errors
from kext.api.schema import Schema
from kext.config import LoggingConfig
from kext.metrics import exposition, parse_samples
from kext.server.app import APIServer, run_reactor
from kext.server.channel import Channel, ChannelClosed, RemoteError
from kext.server.config import CompletedConfig
from kext.server.logs import configure_logging
from kext.server.request import AnyResponse, APIRequest, Handler

log = logging.getLogger("kext")

WORKER_HEADER = "X-Kext-Worker"  # which worker answered (only when there are several)
GATHER_TIMEOUT = 5.0  # seconds /metrics waits for the sum across workers
# After each connection it accepts, a worker leaves the shared accept queue to the others for
# this long (about what the connection's TLS handshake costs it next).
ACCEPT_PAUSE = 0.001


@dataclass(frozen=True)
class WorkerSettings:
    """What the supervisor gives a worker: the config it is built from, which worker it is of
    how many, and how it logs."""

    config: CompletedConfig
    index: int
    workers: int
    logging: LoggingConfig

    def to_json(self) -> str:
        return json.dumps(_encode(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        return _decode(cls, json.loads(text))


# What is compiled from plain data travels as that data and is compiled again in the worker:
# type -> (its data, how to build it from the data).
_REBUILT: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    Schema: (lambda schema: schema.source, Schema),  # a version's openAPIV3Schema, compiled
    bytes: (lambda data: base64.b64encode(data).decode(), base64.b64decode),  # PEM bundles
}


def _encode(value: Any) -> Any:
    """value as JSON data: dataclasses field by field, tuples as lists, _REBUILT types as
    their data."""
    rebuilt = _REBUILT.get(type(value))
    if rebuilt is not None:
        return rebuilt[0](value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def _decode(hint: Any, value: Any) -> Any:
    """value (JSON data) as the type hint says: dataclasses by their fields' hints, tuples,
    lists, dicts, optionals, _REBUILT types and plain values."""
    if hint in _REBUILT:
        return _REBUILT[hint][1](value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _decode(hints[f.name], value[f.name])
                       for f in dataclasses.fields(hint) if f.init and f.name in value})
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _decode(inner, value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v) for v in value)
        return tuple(_decode(a, v) for a, v in zip(args, value, strict=True))
    if origin is list:
        return [_decode(args[0], v) for v in value]
    if origin in (dict, collections.abc.Mapping):
        return {k: _decode(args[1], v) for k, v in value.items()}
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def inflight_share(limit: int, index: int, workers: int) -> int:
    """Worker index's part of an in-flight limit split across workers (0: no limit); the
    parts add up to the limit."""
    if limit <= 0:
        return limit
    return limit // workers + (1 if index < limit % workers else 0)


def worker_audit_path(path: str, index: int) -> str:
    """Where worker index writes audit.logPath: a file of its own beside it
    (`audit.log` -> `audit-worker-1.log`), since each worker rotates its file by size on its
    own; "" (no audit log) and "-" (standard output) stay."""
    if path in ("", "-"):
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}-worker-{index}{ext}"


def worker_settings(config: CompletedConfig, index: int, workers: int,
                    logs: LoggingConfig) -> WorkerSettings:
    """Settings of worker index of workers: config, with its share of the in-flight limits
    and an audit log file of its own (see worker_audit_path)."""
    share = dataclasses.replace(
        config,
        max_requests_inflight=inflight_share(config.max_requests_inflight, index, workers),
        max_mutating_requests_inflight=inflight_share(config.max_mutating_requests_inflight,
                                                      index, workers),
        audit=dataclasses.replace(config.audit,
                                  log_path=worker_audit_path(config.audit.log_path, index)),
    )
    return WorkerSettings(share, index, workers, logs)


def with_worker_header(handler: Handler, index: int) -> Handler:
    """Every response says which worker answered it (X-Kext-Worker: index)."""
    value = str(index)

    async def serve(request: APIRequest) -> AnyResponse:
        response = await handler(request)
        response.headers.append((WORKER_HEADER, value))
        return response

    return serve


def share_the_accept_queue(port: Any, reactor: Any, pause: float = ACCEPT_PAUSE) -> None:
    """Make a twisted TCP port take one connection from the shared accept queue, then leave
    the queue to the other workers for `pause` seconds. Twisted accepts up to 100 (and
    growing) in one go, and every worker wakes for a new connection: the first to run took a
    whole burst, so 8 connections opened at once landed 8 to 0 on two idle workers in most
    tries (kept alive, their requests stay there); with the pause, about 4 to 4. One worker
    then accepts at most one connection per pause, i.e. 1,000 a second."""
    accept = port.doRead

    def resume() -> None:
        if port.connected:  # not stopped meanwhile
            port.startReading()

    def accept_one() -> None:
        port.numberAccepts = 1
        accept()
        if port.connected:
            port.stopReading()
            reactor.callLater(pause, resume)

    port.doRead = accept_one


def serve(settings: WorkerSettings, listener: socket.socket, channel_socket: socket.socket) -> int:
    """Run this worker's API server on listener until SIGTERM/SIGINT or until the supervisor
    goes away; returns the exit code."""
    server: APIServer | None = None
    channel: Channel | None = None
    tasks: list[asyncio.Future[None]] = []

    async def gather() -> bytes:
        assert channel is not None
        try:
            data = await channel.call("gather", timeout=GATHER_TIMEOUT)
        except (ChannelClosed, RemoteError, TimeoutError) as exc:
            raise errors.service_unavailable(
                f"the metrics of the other workers are unavailable: {exc or 'timed out'}"
            ) from None
        return exposition(parse_samples(data))

    async def samples(_: Any) -> Any:
        assert server is not None
        return server.metrics.samples()

    async def start() -> None:
        nonlocal server, channel
        from twisted.internet import reactor

        channel = await Channel.open(channel_socket, {"metrics": samples})
        server = APIServer(settings.config, metrics_exposition=gather)
        await server.prepare_run()
        assert server.handler is not None
        server.handler = with_worker_header(server.handler, settings.index)
        server.serve(listener)
        listener.close()  # the port holds a descriptor of its own
        share_the_accept_queue(server.serving.port, reactor)
        channel.notify("serving", {"pid": os.getpid()})

        async def supervisor_gone() -> None:
            assert channel is not None
            await channel.closed.wait()
            log.warning("worker %d: the supervisor went away; stopping", settings.index)
            typing.cast(Any, reactor).stop()

        tasks.append(asyncio.ensure_future(supervisor_gone()))

    async def stop() -> None:
        if server is not None:
            await server.stop()
        if channel is not None:
            channel.close()

    return run_reactor(start, stop)


class WorkerField(logging.Filter):
    """Adds worker=<index> to every log line's fields (text: after the message; JSON: a key)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.fields = {**(getattr(record, "fields", None) or {}), "worker": self.index}
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kext.server.worker",
                                     description="A kext worker, started by kext's supervisor.")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--channel-fd", type=int, required=True)
    args = parser.parse_args(argv)
    settings = WorkerSettings.from_json(sys.stdin.read())
    configure_logging(settings.logging)
    for handler in logging.getLogger().handlers:
        handler.addFilter(WorkerField(settings.index))
    listener = socket.socket(fileno=args.listen_fd)
    channel_socket = socket.socket(fileno=args.channel_fd)
    return serve(settings, listener, channel_socket)


if __name__ == "__main__":
    sys.exit(main())
