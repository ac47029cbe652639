"""The process-level parts of kext, prepared before any API server exists (cf. what
SecureServingOptions and the etcd options prepare in kube's Options → Config step): the
serving certificates (the configured ones, or self-signed material generated once), the
embedded etcd when no endpoints are configured, and the listening socket.

One process owns these, however many API servers serve from them: a server builds only its
own parts (etcd client, caches, stores, filters) from them, so a supervisor can hold these
and hand the socket to several workers."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from twisted.internet.error import CannotListenError

from kext.certs import dialable_url, ensure_self_signed
from kext.config import ServerConfig, StorageConfig
from kext.storage.embedded import EmbeddedEtcd
from kext.storage.settings import EmbeddedEtcdSettings, EtcdSettings

log = logging.getLogger("kext")

# The listen backlog twisted's listenTCP/listenSSL uses.
LISTEN_BACKLOG = 50


@dataclass(frozen=True)
class ServingCertificates:
    """What a server serves TLS with, and where clients reach it (cf. SecureServingInfo's
    Cert and ClientCA). Plain data: a worker process can be given it as it is."""

    cert_file: str
    key_file: str
    client_ca_files: tuple[str, ...]  # every CA a client certificate may be signed by
    url: str  # the address clients dial
    kubeconfig: str  # the generated admin kubeconfig; "" when certificates were configured


def serving_certificates(options: ServerConfig) -> ServingCertificates:
    """The configured serving certificate, or self-signed material in serving.certDir
    (generated once, reused while valid; cf. MaybeDefaultWithSelfSignedCerts)."""
    serving, authn = options.serving, options.authentication
    host = serving.bind_address
    url_host = f"[{host}]" if ":" in host else host
    url = f"https://{url_host}:{serving.port}"
    client_ca_files = [p for p in (authn.client_ca_file, authn.request_header.client_ca_file)
                       if p]
    if serving.cert_file:
        return ServingCertificates(serving.cert_file, serving.key_file, tuple(client_ca_files),
                                   url, "")
    material = ensure_self_signed(serving.cert_dir, [host], url)
    if not authn.client_ca_file:
        client_ca_files.append(material.client_ca_file)
    return ServingCertificates(material.cert_file, material.key_file, tuple(client_ca_files),
                               dialable_url(url), material.kubeconfig)


def listen(bind_address: str, port: int) -> socket.socket:
    """A listening TCP socket on bind_address:port, as twisted's listenTCP makes it
    (SO_REUSEADDR, non-blocking, not inherited by child processes; cf. net.Listen in
    SecureServingOptions.ApplyTo). Raises CannotListenError."""
    if ipaddress.ip_address(bind_address).version == 6:
        family = socket.AF_INET6
        address = socket.getaddrinfo(bind_address, port, family, socket.SOCK_STREAM, 0,
                                     socket.AI_NUMERICHOST)[0][4]
    else:
        family, address = socket.AF_INET, (bind_address, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise CannotListenError(bind_address, port, exc) from None
    return sock


def storage_settings(cfg: StorageConfig) -> tuple[EtcdSettings, EmbeddedEtcdSettings]:
    """What storage needs from the configuration: how to reach etcd, and how to run the
    embedded one (used when no endpoint is configured)."""
    etcd = EtcdSettings(endpoints=tuple(cfg.etcd.endpoints), ca_file=cfg.etcd.ca_file,
                        cert_file=cfg.etcd.cert_file, key_file=cfg.etcd.key_file)
    return etcd, EmbeddedEtcdSettings(data_dir=cfg.embedded.data_dir)


class Process:
    """The process-level parts for one configuration: `await start()`, then `listen()`;
    `await stop()` once the servers have stopped."""

    def __init__(self, options: ServerConfig) -> None:
        self.options = options
        # the etcd every server connects to, and the embedded one run when none is configured
        self.etcd, self._embedded_settings = storage_settings(options.storage)
        self.embedded: EmbeddedEtcd | None = None
        self.listener: socket.socket | None = None

    async def start(self) -> ServingCertificates:
        """Start the embedded etcd if no endpoints are configured, and make sure of the
        serving certificates; returns those."""
        if not self.etcd.endpoints:
            self.embedded = EmbeddedEtcd(self._embedded_settings)
            endpoint = await self.embedded.start()
            self.etcd = EtcdSettings(endpoints=(endpoint,))
            log.info("embedded etcd serving on %s (data in %s)", endpoint,
                     self.options.storage.embedded.data_dir)
        return serving_certificates(self.options)

    def listen(self) -> socket.socket:
        """The listening socket (opened on first call). A server that serves it takes a
        descriptor of its own; this one stays open until close_listener() or stop()."""
        if self.listener is None:
            serving = self.options.serving
            self.listener = listen(serving.bind_address, serving.port)
        return self.listener

    def close_listener(self) -> None:
        """Close this process's descriptor of the socket: connections are then accepted only
        while a server serving it still listens."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    async def stop(self) -> None:
        self.close_listener()
        if self.embedded is not None:
            await self.embedded.stop()
