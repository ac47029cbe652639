"""The HTTPS listener's TLS: TLS 1.2+, ALPN h2 and http/1.1, client certificates requested
(never required: a request without one may authenticate otherwise) and verified against
kext's client CAs, and the serving cert/key reloaded when their files change (new connections
get the new cert; open ones keep theirs).

The client CAs are the configured files plus any CA bundles that change while kext runs (the
cluster's, from extension-apiserver-authentication): when one changes, the next handshake
uses a context built with the new set, so a rotated front-proxy CA is accepted without a
restart (cf. kube's dynamic ClientCA in SecureServingInfo)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

from kext.auth.ca import CABundle
from kext.certs import load_certificates, load_serving_pair

log = logging.getLogger(__name__)


def _load(cert_file: str, key_file: str, client_ca_files: list[str],
          client_cas: Sequence[CABundle] = ()) -> ssl.CertificateOptions:
    chain, key = load_serving_pair(cert_file, key_file)
    # pyOpenSSL takes cryptography's objects for the serving side (its own are deprecated
    # there; Twisted's annotations predate that), but only its own X509 in the CA store.
    serving: dict[str, Any] = {
        "privateKey": key, "certificate": chain[0], "extraCertChain": chain[1:],
    }
    ca_certs = [crypto.X509.from_cryptography(c)
                for path in client_ca_files for c in load_certificates(path)]
    ca_certs += [crypto.X509.from_cryptography(c) for b in client_cas for c in b.certificates]
    return ssl.CertificateOptions(
        **serving,
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableProtocols=[b"h2", b"http/1.1"],
        verify=bool(ca_certs),
        caCerts=ca_certs or None,
        requireCertificate=False,
    )


@implementer(IOpenSSLContextFactory)
class ReloadingContextFactory:
    """An old-style context factory for twisted's TLS: getContext() is called for each new
    connection, so swapping the options on file change serves the new certificate."""

    def __init__(self, cert_file: str, key_file: str, client_ca_files: list[str],
                 client_cas: Sequence[CABundle] = ()) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_files = client_ca_files
        self.client_cas = tuple(client_cas)
        self._stamp = self._mtimes()
        self._ca_versions = self._versions()
        self._options = _load(cert_file, key_file, client_ca_files, self.client_cas)

    def _versions(self) -> tuple[int, ...]:
        return tuple(b.version for b in self.client_cas)

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(os.stat(p).st_mtime_ns for p in (self.cert_file, self.key_file))

    def reload_if_changed(self) -> bool:
        """Reload the cert and key when their files changed; keeps the old ones on error."""
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return False
            self._options = _load(self.cert_file, self.key_file, self.client_ca_files,
                                  self.client_cas)
            self._stamp = stamp
        except (OSError, SSL.Error, ValueError) as exc:  # PEMError is a ValueError
            log.warning("serving certificate not reloaded (keeping the current one): %s", exc)
            return False
        log.info("serving certificate reloaded from %s", self.cert_file)
        return True

    def getContext(self) -> SSL.Context:
        versions = self._versions()
        if versions != self._ca_versions:
            self._ca_versions = versions
            try:
                self._options = _load(self.cert_file, self.key_file, self.client_ca_files,
                                      self.client_cas)
            except (OSError, SSL.Error, ValueError) as exc:
                log.warning("client CAs not reloaded (keeping the current ones): %s", exc)
            else:
                names = ", ".join(f"{b.name} ({len(b.certificates)})" for b in self.client_cas)
                log.info("client CAs reloaded: %s", names)
        return self._options.getContext()
