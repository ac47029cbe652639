"""Run kext: the process-level parts first (kext/server/process.py: serving certificates,
embedded etcd, the listening socket), then one API server built from the completed config
(kext/server/config.py) serving on that socket, until SIGTERM/SIGINT; then the server stops,
and the process-level parts after it."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.protocols.tls import TLSMemoryBIOFactory

from kext.admission.hooks import load_hooks
from kext.config import ServerConfig
from kext.metrics import Metrics
from kext.registry.store import Store, resource_root
from kext.registry.strategy import crd_strategies
from kext.server import filters, http, metadata_paths
from kext.server.config import CompletedConfig, new_config
from kext.server.handlers import watch
from kext.server.healthz import Check, HealthEndpoint, ping
from kext.server.process import Process, ServingCertificates
from kext.server.request import APIRequest, Handler, Response
from kext.server.routes import Router
from kext.server.tls import ReloadingContextFactory
from kext.storage.cacher import DEFAULT_BLOCK_TIMEOUT, Cacher
from kext.storage.etcd3 import Etcd3Store, EtcdClient, connect
from kext.storage.interface import Interface

log = logging.getLogger("kext")

# How long SIGTERM waits for in-flight (non-watch) requests before closing storage.
SHUTDOWN_DRAIN_SECONDS = 10.0


@dataclass
class Serving:
    """What prepare_run() and serve() brought up, so stop() can take it down in reverse
    order."""

    port: Any = None  # twisted's IListeningPort
    storage: EtcdClient | None = None
    caches: list[Cacher] = field(default_factory=list)
    closers: list[Callable[[], object]] = field(default_factory=list)


class APIServer:
    """One API server and everything it owns: its metrics, authenticator, authorizer and
    in-flight counts (built here), its etcd client, watch caches, stores, router and filter
    chain (`await prepare_run()`), its HTTPS port on a listening socket it is given
    (`serve(listener)`). `await stop()` takes them down.

    /metrics answers this server's own metrics, or what metrics_exposition gives (a worker's:
    the sum across workers)."""

    def __init__(self, config: CompletedConfig, *,
                 metrics_exposition: Callable[[], Awaitable[bytes]] | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.metrics_exposition = metrics_exposition
        self.authenticator = config.new_authenticator()
        self.authorizer = config.new_authorizer()
        self.inflight = filters.InFlight(config.max_requests_inflight,
                                         config.max_mutating_requests_inflight, self.metrics)
        self.serving = Serving()
        self.shutting_down = False
        self.handler: Handler | None = None
        self.stores: list[Store] = []

    async def prepare_run(self) -> None:
        """Connect to etcd and build the server on it (cf. New and PrepareRun)."""
        client = await connect(self.config.etcd)
        self.serving.storage = client
        await self.build(Etcd3Store(client))

    async def build(self, storage: Interface, *,
                    block_timeout: float = DEFAULT_BLOCK_TIMEOUT) -> None:
        """Prime a watch cache and build a store per resource over storage, and put the
        router and the filter chain together. Reads wait at most block_timeout seconds for a
        cache to be ready or to reach a revision."""
        cfg = self.config
        for definition in cfg.resources:
            cache = Cacher(storage, resource_root(cfg.storage_prefix, definition),
                           bookmark_interval=cfg.bookmark_interval, block_timeout=block_timeout)
            await cache.start()
            self.serving.caches.append(cache)
            strategies = crd_strategies(definition,
                                        load_hooks(definition.hooks.get("status", ())))
            self.stores.append(Store(definition, cache, cfg.storage_prefix, strategies))
            self.metrics.storage.add(definition.group, definition.storage_version.name,
                                     definition.kind, definition.plural, cache)

        async def etcd_check() -> str | None:
            try:
                await asyncio.wait_for(storage.current_revision(), 2.0)
            except Exception as exc:
                return f"etcd is unreachable: {exc or type(exc).__name__}"
            return None

        health = [
            HealthEndpoint("healthz", [Check("ping", ping), Check("etcd", etcd_check)]),
            HealthEndpoint("livez", [Check("ping", ping), Check("etcd", etcd_check)]),
            HealthEndpoint("readyz", [Check("ping", ping), Check("etcd", etcd_check),
                                      Check("watch-cache", self.cache_check),
                                      Check("shutdown", self.shutdown_check)]),
        ]
        router = Router(self.stores, health, functools.partial(watch.watch, metrics=self.metrics))
        metadata_paths.install(router, cfg.resources)
        router.add_path("/metrics", self.serve_metrics)
        self.handler = filters.chain(router, self.authenticator, self.authorizer,
                                     self.inflight, cfg.request_timeout_seconds, self.metrics)

    def serve(self, listener: socket.socket) -> None:
        """Serve HTTPS on a listening socket (cf. Run). The port takes a descriptor of its
        own: the caller may close its one. The serving certificate is reloaded when its
        files change."""
        from twisted.internet import reactor as _reactor  # the one run() installed

        assert self.handler is not None, "prepare_run() comes first"
        reactor = cast(Any, _reactor)
        cfg = self.config
        site = http.make_site(self.handler, cfg.max_request_body_bytes)
        tls = ReloadingContextFactory(cfg.serving.cert_file, cfg.serving.key_file,
                                      list(cfg.serving.client_ca_files))
        reload_loop = task.LoopingCall(tls.reload_if_changed)
        reload_loop.start(10.0, now=False)
        self.serving.closers.append(reload_loop.stop)
        # what listenSSL does, on a socket that is already listening (the casts: mypy does
        # not see zope's interface declarations)
        https = TLSMemoryBIOFactory(cast(Any, tls), False, cast(Any, site))
        self.serving.port = reactor.adoptStreamPort(listener.fileno(), listener.family, https)

    async def serve_metrics(self, request: APIRequest) -> Response:
        """/metrics: this server's metrics (or every worker's) in the Prometheus text format."""
        body = (self.metrics.exposition() if self.metrics_exposition is None
                else await self.metrics_exposition())
        return Response(200, body, "text/plain; version=0.0.4; charset=utf-8")

    async def cache_check(self) -> str | None:
        waiting = [c.root for c in self.serving.caches if not c.ready]
        return f"watch cache not primed: {', '.join(waiting)}" if waiting else None

    async def shutdown_check(self) -> str | None:
        return "the server is shutting down" if self.shutting_down else None

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (bounded), end watches cleanly, close
        storage."""
        self.shutting_down = True
        if self.serving.port is not None:
            stopping = self.serving.port.stopListening()
            if isinstance(stopping, Deferred):
                await stopping.asFuture(asyncio.get_running_loop())
        if not await self.inflight.drained(SHUTDOWN_DRAIN_SECONDS):
            log.warning("shutting down with requests still in flight after %ss",
                        SHUTDOWN_DRAIN_SECONDS)
        for close in self.serving.closers:
            close()
        for cache in self.serving.caches:
            await cache.stop()  # ends every watch stream cleanly
        if self.serving.storage is not None:
            await self.serving.storage.close()


def announce(options: ServerConfig, certificates: ServingCertificates) -> None:
    """Tell the user where kext listens and how to reach it."""
    url = certificates.url
    names = ", ".join(d.name for d in options.resources) or "no resources"
    print(f"kext is serving {names} on {url}", flush=True)
    if certificates.kubeconfig:
        first = options.resources[0].plural if options.resources else "widgets"
        print(f"  try: kubectl --kubeconfig {certificates.kubeconfig} get {first}", flush=True)
    print(f"  health: curl -k {url}/readyz?verbose", flush=True)


def run(options: ServerConfig) -> int:
    """Run kext until SIGTERM/SIGINT; returns the process exit code. With serving.workers
    above 1, this process is the supervisor of that many workers (kext/server/supervisor.py);
    otherwise it serves itself."""
    if options.serving.workers > 1:
        from kext.server.supervisor import supervise

        return supervise(options)
    process = Process(options)
    server: APIServer | None = None

    async def start() -> None:
        nonlocal server
        certificates = await process.start()
        server = APIServer(new_config(options, certificates, process.etcd).complete())
        await server.prepare_run()
        server.serve(process.listen())
        # The one server of this process holds its own descriptor of the socket: closing
        # this one makes stopping that server stop accepting connections.
        process.close_listener()
        announce(options, certificates)

    async def stop() -> None:
        if server is not None:
            await server.stop()
        await process.stop()  # the embedded etcd stops after the server closed storage

    return run_reactor(start, stop)


def run_reactor(start: Callable[[], Awaitable[None]],
                stop: Callable[[], Awaitable[None]]) -> int:
    """Install Twisted's asyncio reactor, run start() once it runs and stop() before it shuts
    down (SIGTERM/SIGINT); returns the exit code: 1 when start() failed (its message on
    standard error), else 0."""
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor as _reactor

    reactor = cast(Any, _reactor)
    exit_code = 0

    def failed(failure: Any) -> None:
        nonlocal exit_code
        exit_code = 1
        print(f"kext: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        log.debug("start-up failed: %s", failure.getTraceback())
        reactor.stop()

    reactor.callWhenRunning(
        lambda: Deferred.fromFuture(asyncio.ensure_future(start())).addErrback(failed)
    )
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromFuture(asyncio.ensure_future(stop()))
    )
    reactor.run()
    return exit_code
