"""CA certificates that client certificates are verified against, which may change while kext
runs (cf. apiserver pkg/server/dynamiccertificates: a CAContentProvider and its listeners).

A `CABundle` read from a file never changes; one followed from the cluster's
extension-apiserver-authentication ConfigMap is replaced when the ConfigMap changes. Each
replacement bumps `version`, so a reader (an authenticator's verified-certificate cache, the
TLS context's list of acceptable client CAs) knows to rebuild what it derived from it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryptography import x509


class CABundle:
    """A named, replaceable set of CA certificates. Empty (version 0, no certificates) until
    first set, which trusts nothing (cf. a ConfigMapCAController before its first load)."""

    def __init__(self, name: str, certificates: Sequence[x509.Certificate] = ()) -> None:
        self.name = name
        self.certificates: tuple[x509.Certificate, ...] = tuple(certificates)
        self.version = 1 if certificates else 0
        self._listeners: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"CABundle({self.name!r}, {len(self.certificates)} certificates)"

    @property
    def loaded(self) -> bool:
        """Whether it holds content (a bundle never loaded verifies no certificate)."""
        return bool(self.certificates)

    def set(self, certificates: Sequence[x509.Certificate]) -> bool:
        """Replace the certificates; returns whether they changed (listeners are told)."""
        new = tuple(certificates)
        if new == self.certificates:
            return False
        self.certificates = new
        self.version += 1
        for listener in self._listeners:
            listener()
        return True

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call listener (no arguments) after each change."""
        self._listeners.append(listener)


def parse_ca_bundle(pem: str | bytes) -> list[x509.Certificate]:
    """The certificates of a PEM CA bundle; ValueError when it holds none or one does not
    parse (cf. newCABundleAndVerifier)."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"CERTIFICATE-----" not in data:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) in the bundle")
    return x509.load_pem_x509_certificates(data)
