"""Assemble and run the server: storage (external or embedded etcd), one store per declared
resource, the router and filter chain, and the HTTPS listener on the asyncio reactor."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field
from typing import Any, cast

from kext.config import ServerConfig, StorageConfig
from kext.storage.settings import EmbeddedEtcdSettings, EtcdSettings

log = logging.getLogger("kext")

# How long SIGTERM waits for in-flight (non-watch) requests before closing storage.
SHUTDOWN_DRAIN_SECONDS = 10.0


def storage_settings(cfg: StorageConfig) -> tuple[EtcdSettings, EmbeddedEtcdSettings]:
    """What storage needs from the configuration: how to reach etcd, and how to run the
    embedded one (used when no endpoint is configured)."""
    etcd = EtcdSettings(endpoints=tuple(cfg.etcd.endpoints), ca_file=cfg.etcd.ca_file,
                        cert_file=cfg.etcd.cert_file, key_file=cfg.etcd.key_file)
    return etcd, EmbeddedEtcdSettings(data_dir=cfg.embedded.data_dir)


@dataclass
class Serving:
    """What start() brought up, so stop() can take it down in reverse order."""

    port: Any = None
    embedded: Any = None
    storage: Any = None
    caches: list[Any] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)


async def serve_metrics(request: Any) -> Any:
    """/metrics in the Prometheus text format."""
    from kext import metrics
    from kext.server.request import Response

    return Response(200, metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")


class APIServer:
    """The running server. Build with a config, then `await start()` / `await stop()`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.serving = Serving()
        self.url = ""
        self.shutting_down = False
        self.inflight: Any = None

    async def start(self) -> None:
        from twisted.internet import reactor as _reactor
        from twisted.internet import task

        from kext import metrics
        from kext.admission.hooks import load_hooks
        from kext.auth.authentication import (
            RequestHeaderAuthenticator,
            UnionAuthenticator,
            X509Authenticator,
            load_ca_bundle,
        )
        from kext.certs import dialable_url, ensure_self_signed
        from kext.registry.store import Store, resource_root
        from kext.registry.strategy import crd_strategies
        from kext.server import filters, http, metadata_paths
        from kext.server.healthz import Check, HealthEndpoint, ping
        from kext.server.routes import Router
        from kext.server.tls import ReloadingContextFactory
        from kext.storage.cacher import Cacher
        from kext.storage.embedded import EmbeddedEtcd
        from kext.storage.etcd3 import Etcd3Store, connect

        reactor = cast(Any, _reactor)
        cfg = self.config
        host = cfg.serving.bind_address
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"https://{url_host}:{cfg.serving.port}"

        etcd_settings, embedded_settings = storage_settings(cfg.storage)
        if not etcd_settings.endpoints:
            self.serving.embedded = EmbeddedEtcd(embedded_settings)
            endpoint = await self.serving.embedded.start()
            etcd_settings = EtcdSettings(endpoints=(endpoint,))
            log.info("embedded etcd serving on %s (data in %s)", endpoint,
                     cfg.storage.embedded.data_dir)
        client = await connect(etcd_settings)
        self.serving.storage = client
        storage = Etcd3Store(client)

        cert_file, key_file = cfg.serving.cert_file, cfg.serving.key_file
        client_ca_files = [p for p in (cfg.authentication.client_ca_file,
                                       cfg.authentication.request_header.client_ca_file) if p]
        self.kubeconfig = ""
        if not cert_file:
            material = ensure_self_signed(cfg.serving.cert_dir, [host], self.url)
            self.url = dialable_url(self.url)
            cert_file, key_file = material.cert_file, material.key_file
            self.kubeconfig = material.kubeconfig
            if not cfg.authentication.client_ca_file:
                client_ca_files.append(material.client_ca_file)

        authenticators: list[Any] = []
        request_header = None
        rh = cfg.authentication.request_header
        if rh.client_ca_file:
            request_header = RequestHeaderAuthenticator(
                load_ca_bundle(rh.client_ca_file), rh.allowed_names, rh.username_headers,
                rh.group_headers, rh.extra_header_prefixes,
            )
            authenticators.append(request_header)
        x509_files = [p for p in client_ca_files if p != rh.client_ca_file]
        if x509_files:
            authenticators.append(X509Authenticator(
                [c for p in x509_files for c in load_ca_bundle(p)]
            ))
        authenticator = UnionAuthenticator(authenticators, cfg.authentication.anonymous,
                                           request_header)

        stores = []
        for definition in cfg.resources:
            cache = Cacher(storage, resource_root(cfg.storage.prefix, definition))
            await cache.start()
            self.serving.caches.append(cache)
            strategies = crd_strategies(definition,
                                        load_hooks(definition.hooks.get("status", ())))
            stores.append(Store(definition, cache, cfg.storage.prefix, strategies))
            metrics.storage.add(definition.group, definition.storage_version.name,
                                definition.kind, definition.plural, cache)

        async def cache_check() -> str | None:
            waiting = [c.root for c in self.serving.caches if not c.ready]
            return f"watch cache not primed: {', '.join(waiting)}" if waiting else None

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
                                      Check("watch-cache", cache_check),
                                      Check("shutdown", self.shutdown_check)]),
        ]
        router = Router(stores, health)
        metadata_paths.install(router, cfg.resources)
        router.add_path("/metrics", serve_metrics)
        self.inflight = filters.InFlight(cfg.serving.max_requests_inflight,
                                         cfg.serving.max_mutating_requests_inflight)
        handler = filters.chain(
            router, authenticator, cfg.authorization.always_allow_paths, self.inflight,
            cfg.serving.request_timeout_seconds,
        )
        site = http.make_site(handler, cfg.serving.max_request_body_bytes)
        tls = ReloadingContextFactory(cert_file, key_file, client_ca_files)
        reload_loop = task.LoopingCall(tls.reload_if_changed)
        reload_loop.start(10.0, now=False)
        self.serving.closers.append(reload_loop.stop)
        self.serving.port = reactor.listenSSL(
            cfg.serving.port, site, tls, interface=host
        )
        self.announce()

    def announce(self) -> None:
        """Tell the user where kext listens and how to reach it."""
        names = ", ".join(d.name for d in self.config.resources) or "no resources"
        print(f"kext is serving {names} on {self.url}", flush=True)
        if self.kubeconfig:
            first = self.config.resources[0].plural if self.config.resources else "widgets"
            print(f"  try: kubectl --kubeconfig {self.kubeconfig} get {first}", flush=True)
        print(f"  health: curl -k {self.url}/readyz?verbose", flush=True)

    async def shutdown_check(self) -> str | None:
        return "the server is shutting down" if self.shutting_down else None

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (bounded), end watches cleanly, close
        storage, stop the embedded etcd."""
        self.shutting_down = True
        if self.serving.port is not None:
            from twisted.internet.defer import Deferred

            stopping = self.serving.port.stopListening()
            if isinstance(stopping, Deferred):
                await stopping.asFuture(asyncio.get_running_loop())
        if self.inflight is not None and not await self.inflight.drained(SHUTDOWN_DRAIN_SECONDS):
            log.warning("shutting down with requests still in flight after %ss",
                        SHUTDOWN_DRAIN_SECONDS)
        for close in self.serving.closers:
            close()
        for cache in self.serving.caches:
            await cache.stop()  # ends every watch stream cleanly
        if self.serving.storage is not None:
            await self.serving.storage.close()
        if self.serving.embedded is not None:
            await self.serving.embedded.stop()


def run(config: ServerConfig) -> int:
    """Run kext until SIGTERM/SIGINT; returns the process exit code."""
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor as _reactor
    from twisted.internet.defer import Deferred

    reactor = cast(Any, _reactor)
    server = APIServer(config)
    exit_code = 0

    def failed(failure: Any) -> None:
        nonlocal exit_code
        exit_code = 1
        print(f"kext: {failure.getErrorMessage()}", file=sys.stderr, flush=True)
        log.debug("start-up failed: %s", failure.getTraceback())
        reactor.stop()

    def start() -> None:
        Deferred.fromFuture(asyncio.ensure_future(server.start())).addErrback(failed)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: Deferred.fromFuture(asyncio.ensure_future(server.stop()))
    )
    reactor.run()
    return exit_code
