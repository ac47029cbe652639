"""Run kext: the process-level parts first (kext/server/process.py: serving certificates,
embedded etcd, the listening socket), then one API server built from the completed config
(kext/server/config.py) serving on that socket, until SIGTERM/SIGINT; then the server stops
gracefully (APIServer.stop), and the process-level parts after it (embedded etcd last). A
second SIGTERM/SIGINT while stopping exits at once (as kube-apiserver does)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet import task
from twisted.internet.defer import Deferred

from kext.admission.hooks import load_hook, load_hooks
from kext.admission.plugins import AdmissionPlugins
from kext.api.resource import ResourceDefinition
from kext.audit import AuditLog, load_policy
from kext.config import ServerConfig
from kext.httpclient import WebhookClient
from kext.metrics import Metrics
from kext.registry.conversion import Converter, ConverterHook, new_converter
from kext.registry.store import Store, resource_root
from kext.registry.storedversions import StoredVersionsError, update_stored_versions
from kext.registry.strategy import crd_strategies
from kext.server import filters, h2, http, metadata_paths
from kext.server.config import CompletedConfig, new_config
from kext.server.connections import ServingConnections, adopt_port
from kext.server.handlers import watch
from kext.server.healthz import Check, HealthEndpoint, ping
from kext.server.logs import configure_logging
from kext.server.process import Process, ServingCertificates
from kext.server.request import APIRequest, Handler, Response
from kext.server.routes import Router
from kext.server.tls import ReloadingContextFactory
from kext.storage.cacher import DEFAULT_BLOCK_TIMEOUT, Cacher
from kext.storage.etcd3 import Etcd3Store, EtcdClient, connect
from kext.storage.interface import Interface

log = logging.getLogger("kext")

# How long shutdown waits for watch streams to be written to their end, and then for
# connections to flush and close.
STREAMS_END_SECONDS = 5.0
CONNECTIONS_CLOSE_SECONDS = 5.0


@dataclass
class Serving:
    """What prepare_run() and serve() brought up, so stop() can take it down in reverse
    order."""

    port: Any = None  # twisted's IListeningPort
    connections: ServingConnections | None = None
    storage: EtcdClient | None = None
    caches: list[Cacher] = field(default_factory=list)
    audit_log: AuditLog | None = None
    closers: list[Callable[[], object]] = field(default_factory=list)
    webhook_clients: list[WebhookClient] = field(default_factory=list)


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
        self.kube = config.new_kube_client()
        self.security = config.new_security(self.metrics, self.kube)
        self.authenticator = self.security.authenticator
        self.authorizer = self.security.authorizer
        self.inflight = filters.InFlight(config.max_requests_inflight,
                                         config.max_mutating_requests_inflight, self.metrics)
        self.serving = Serving()
        self.shutting_down = False  # readyz fails from the moment shutdown begins
        self.not_accepting = False  # the listener is closed: new requests get 429
        self.handler: Handler | None = None
        self.stores: list[Store] = []
        self.admission = AdmissionPlugins.from_config(config.admission, self.metrics.admission,
                                                      self.kube, self.authorizer)

    async def prepare_run(self) -> None:
        """Start following the cluster's authentication settings, connect to etcd and build the
        server on it (cf. New and PrepareRun)."""
        await self.security.start()
        client = await connect(self.config.etcd)
        self.serving.storage = client
        await self.build(Etcd3Store(client, observer=self.metrics.etcd))

    async def build(self, storage: Interface, *,
                    block_timeout: float = DEFAULT_BLOCK_TIMEOUT) -> None:
        """Prime a watch cache and build a store per resource over storage, and put the
        router and the filter chain together. Reads wait at most block_timeout seconds for a
        cache to be ready or to reach a revision."""
        cfg = self.config
        served: dict[tuple[str, str, str], frozenset[str]] = {}
        for definition in cfg.resources:
            self.metrics.etcd.add_resource(cfg.storage_prefix, definition.group,
                                           definition.plural)
            for version in definition.served_versions:
                served[(definition.group, version.name, definition.plural)] = frozenset(
                    {""} | ({"status"} if version.status_subresource else set())
                    | ({"scale"} if version.scale is not None else set()))
            root = resource_root(cfg.storage_prefix, definition)
            cache = Cacher(storage, root, bookmark_interval=cfg.bookmark_interval,
                           block_timeout=block_timeout)
            await cache.start()
            self.serving.caches.append(cache)
            try:
                stored = await update_stored_versions(storage, cache, cfg.storage_prefix, root,
                                                      definition)
            except StoredVersionsError as exc:
                raise RuntimeError(str(exc)) from None
            log.debug("%s: objects stored as %s", definition.name, ", ".join(stored))
            strategies = crd_strategies(definition,
                                        load_hooks(definition.hooks.get("status", ())))
            self.stores.append(Store(definition, cache, cfg.storage_prefix, strategies,
                                     self.new_converter(definition)))
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
        self.admission.start()
        router = Router(self.stores, health, functools.partial(watch.watch, metrics=self.metrics),
                        self.admission)
        metadata_paths.install(router, cfg.resources)
        router.add_path("/metrics", self.serve_metrics)
        self.handler = filters.chain(router, self.authenticator, self.authorizer,
                                     self.inflight, cfg.request_timeout_seconds, self.metrics,
                                     auditor=self.new_auditor(), served=served,
                                     not_accepting=lambda: self.not_accepting)

    def new_auditor(self) -> filters.Auditor | None:
        """The audit policy and log, when audit.policyFile is set (the log's writer thread
        starts here)."""
        audit = self.config.audit
        if not audit.policy_file:
            return None
        policy = load_policy(audit.policy_file)
        errors = self.metrics.audit_errors
        sink = AuditLog(audit.log_path, audit.max_size_mb, audit.max_backups,
                        lambda plugin, n: errors.labels(plugin).inc(n))
        sink.start()
        self.serving.audit_log = sink
        log.info("auditing to %s as %s says", "standard output" if audit.log_path == "-"
                 else audit.log_path, audit.policy_file)
        return filters.Auditor(policy, sink, self.metrics)

    def new_converter(self, definition: ResourceDefinition) -> Converter:
        """The resource's converter: its conversion hook (imported here: the registry imports
        no user code), its webhook (with a pooled HTTPS client of this server's), or None."""
        hooks = definition.hooks.get("conversion", ())
        if hooks:
            return new_converter(definition, hook=cast(ConverterHook, load_hook(hooks[0])))
        webhook = definition.conversion.webhook
        if definition.conversion.strategy == "Webhook" and webhook is not None:
            client = WebhookClient(webhook.address, webhook.ca_bundle)
            self.serving.webhook_clients.append(client)
            return new_converter(definition, transport=client)
        return new_converter(definition)

    def serve(self, listener: socket.socket) -> None:
        """Serve HTTPS on a listening socket (cf. Run). The port takes a descriptor of its
        own: the caller may close its one. The serving certificate is reloaded when its
        files change."""
        from twisted.internet import reactor as _reactor  # the one run() installed

        assert self.handler is not None, "prepare_run() comes first"
        reactor = cast(Any, _reactor)
        cfg = self.config
        site = http.make_site(self.handler, cfg.max_request_body_bytes,
                              cfg.read_header_timeout_seconds)
        tls = ReloadingContextFactory(cfg.serving.cert_file, cfg.serving.key_file,
                                      list(cfg.serving.client_ca_files),
                                      self.security.cluster_client_cas)
        reload_loop = task.LoopingCall(tls.reload_if_changed)
        reload_loop.start(10.0, now=False)
        self.serving.closers.append(reload_loop.stop)
        # what listenSSL does, on a socket that is already listening; HTTP/2 by kext's own
        # protocol, HTTP/1.1 by the site's (h2.ServingFactory)
        serving = h2.ServingFactory(site, self.handler, cfg.max_request_body_bytes)
        https = ServingConnections(tls, serving, self.metrics.tls_handshake_errors.inc)
        self.serving.connections = https
        self.serving.port = adopt_port(reactor, listener.fileno(), listener.family, https)

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
        """Shut down as kube-apiserver does on SIGTERM: readyz fails at once; after
        serving.shutdownDelayDuration the listener closes and new requests on connections
        still open get 429 (Retry-After); requests in flight finish (bounded by the request
        timeout); the watch caches stop, which ends every watch with its stream's
        terminating chunk; each connection closes once what was written to it is sent; the
        audit log is written out; storage closes."""
        cfg = self.config
        self.shutting_down = True
        serving = self.serving
        if serving.port is not None and cfg.shutdown_delay_seconds > 0:
            log.info("shutting down: /readyz fails from now, the listener closes in %gs",
                     cfg.shutdown_delay_seconds)
            await asyncio.sleep(cfg.shutdown_delay_seconds)
        self.not_accepting = True
        if serving.port is not None:
            stopping = serving.port.stopListening()
            if isinstance(stopping, Deferred):
                await stopping.asFuture(asyncio.get_running_loop())
        if not await self.inflight.drained(cfg.request_timeout_seconds):
            log.warning("shutting down with requests still in flight after %gs",
                        cfg.request_timeout_seconds)
        for close in serving.closers:
            close()
        for cache in serving.caches:
            await cache.stop()  # ends every watch
        if not await self.inflight.streams_ended(STREAMS_END_SECONDS):
            log.warning("%d watch streams did not end within %gs", self.inflight.streams,
                        STREAMS_END_SECONDS)
        # A stream's last chunk is written right after its end is counted: let that run.
        await asyncio.sleep(0)
        if serving.connections is not None:
            await serving.connections.close(CONNECTIONS_CLOSE_SECONDS)
        if serving.audit_log is not None:
            await serving.audit_log.close()
        await self.admission.close()
        for client in serving.webhook_clients:
            await client.close()
        if serving.storage is not None:
            await serving.storage.close()
        await self.security.stop()
        if self.kube is not None:
            await self.kube.close()
        log.info("API server stopped")


def announce(options: ServerConfig, certificates: ServingCertificates) -> None:
    """Tell the user where kext listens and how to reach it (on standard error when audit
    events go to standard output)."""
    out = sys.stderr if options.audit.log_path == "-" else sys.stdout
    url = certificates.url
    names = ", ".join(d.name for d in options.resources) or "no resources"
    print(f"kext is serving {names} on {url}", file=out, flush=True)
    if certificates.kubeconfig:
        first = options.resources[0].plural if options.resources else "widgets"
        # absolute: the line works pasted into a shell in any directory
        kubeconfig = os.path.abspath(certificates.kubeconfig)
        print(f"  try: kubectl --kubeconfig {kubeconfig} get {first}", file=out, flush=True)
    print(f"  health: curl -k {url}/readyz?verbose", file=out, flush=True)


def run(options: ServerConfig) -> int:
    """Run kext until SIGTERM/SIGINT; returns the process exit code. With serving.workers
    above 1, this process is the supervisor of that many workers (kext/server/supervisor.py);
    otherwise it serves itself."""
    configure_logging(options.logging)
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
    install_stop_signals(loop, reactor.stop)
    # our own handlers, not twisted's: twisted leaves SIGINT alone when the process started
    # with it ignored (a script's `kext &`), so Ctrl-C or `kill -INT` would not stop kext
    reactor.run(installSignalHandlers=False)
    return exit_code


def install_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], object]) -> None:
    """SIGTERM and SIGINT call stop once, however the process was started (an inherited
    SIG_IGN is overridden); the second one exits at once with code 1."""
    signals: list[int] = []

    def received(signum: int) -> None:
        name = signal.Signals(signum).name
        if signals:
            print(f"kext: {name} again: exiting without waiting", file=sys.stderr, flush=True)
            os._exit(1)
        signals.append(signum)
        log.info("%s: stopping", name)
        stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, received, signum)
