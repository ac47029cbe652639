"""The HTTPS listener's TLS: TLS 1.2+, ALPN h2 and http/1.1, optional client certificates
verified against kext's client CAs, and the serving cert/key reloaded when their files change
(new connections get the new cert; open ones keep theirs)."""

from __future__ import annotations

import logging
import os

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

log = logging.getLogger(__name__)


def _load(cert_file: str, key_file: str, client_ca_files: list[str]) -> ssl.CertificateOptions:
    with open(cert_file, "rb") as f:
        pem = f.read()
    certs = [crypto.load_certificate(crypto.FILETYPE_PEM, block)
             for block in _pem_blocks(pem, b"CERTIFICATE")]
    with open(key_file, "rb") as f:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
    ca_certs: list[crypto.X509] = []
    for path in client_ca_files:
        with open(path, "rb") as f:
            ca_certs.extend(crypto.load_certificate(crypto.FILETYPE_PEM, b)
                            for b in _pem_blocks(f.read(), b"CERTIFICATE"))
    options = ssl.CertificateOptions(
        privateKey=key,
        certificate=certs[0],
        extraCertChain=certs[1:],
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableProtocols=[b"h2", b"http/1.1"],
        verify=bool(ca_certs),
        caCerts=ca_certs or None,
        requireCertificate=False,
    )
    return options


def _pem_blocks(pem: bytes, label: bytes) -> list[bytes]:
    begin, end = b"-----BEGIN " + label + b"-----", b"-----END " + label + b"-----"
    blocks = []
    start = pem.find(begin)
    while start != -1:
        stop = pem.index(end, start) + len(end)
        blocks.append(pem[start:stop])
        start = pem.find(begin, stop)
    return blocks


@implementer(IOpenSSLContextFactory)
class ReloadingContextFactory:
    """An old-style context factory for twisted's TLS: getContext() is called for each new
    connection, so swapping the options on file change serves the new certificate."""

    def __init__(self, cert_file: str, key_file: str, client_ca_files: list[str]) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.client_ca_files = client_ca_files
        self._stamp = self._mtimes()
        self._options = _load(cert_file, key_file, client_ca_files)

    def _mtimes(self) -> tuple[float, ...]:
        return tuple(os.stat(p).st_mtime_ns for p in (self.cert_file, self.key_file))

    def reload_if_changed(self) -> bool:
        """Reload the cert and key when their files changed; keeps the old ones on error."""
        try:
            stamp = self._mtimes()
            if stamp == self._stamp:
                return False
            self._options = _load(self.cert_file, self.key_file, self.client_ca_files)
            self._stamp = stamp
        except (OSError, SSL.Error, crypto.Error, ValueError) as exc:
            log.warning("serving certificate not reloaded (keeping the current one): %s", exc)
            return False
        log.info("serving certificate reloaded from %s", self.cert_file)
        return True

    def getContext(self) -> SSL.Context:
        return self._options.getContext()
