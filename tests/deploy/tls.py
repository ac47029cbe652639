"""Certificate checks of the deployment tests, with `cryptography`'s path validation: what
kube-apiserver's aggregator does when it dials the Service with the APIService's caBundle."""

from __future__ import annotations

import base64
import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID


def b64_pem(data: str) -> bytes:
    """The PEM text of a Secret's data value or a caBundle (base64 in the object)."""
    return base64.b64decode(data, validate=True)


def verify_server(ca_pem: bytes, cert_pem: bytes, key_pem: bytes, hostname: str) -> None:
    """The certificate chains to the CA, is valid now for hostname as a TLS server, and the
    key is its private key; raises otherwise."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store([ca]))
        .time(datetime.datetime.now(datetime.UTC))
        .build_server_verifier(verification.DNSName(hostname))
    )
    verifier.verify(cert, [])
    assert_key_matches(cert, key_pem)


def verify_client(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
    """The certificate chains to the CA as a TLS client certificate."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    now = datetime.datetime.now(datetime.UTC)
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert_key_matches(cert, key_pem)


def assert_key_matches(cert: x509.Certificate, key_pem: bytes) -> None:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert key.public_key() == cert.public_key(), "the key does not belong to the certificate"


def dns_names(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)
