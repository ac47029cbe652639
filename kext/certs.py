"""Self-signed TLS material: a serving CA and certificate, a client CA, an admin client
certificate and a kubeconfig that uses them (SPEC §3, §6).

`ensure_self_signed` is what kext runs when `serving.certFile` is empty; it keeps what is
already in the directory and only (re)issues what is missing, expiring within 30 days, or no
longer matching (other CA, other hosts). `new_ca` and `issue_cert` are the building blocks,
also used by tests to make front-proxy and client certificates.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import ipaddress
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "kext-admin"
ADMIN_GROUP = "system:masters"
CA_DAYS = 3650
CERT_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)
# Certificates start a little in the past so a client whose clock lags still accepts them.
BACKDATE = datetime.timedelta(hours=1)

# The private keys a TLS server can sign handshakes with.
PrivateKey = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
              | ed448.Ed448PrivateKey | dsa.DSAPrivateKey)
PRIVATE_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                     ed448.Ed448PrivateKey, dsa.DSAPrivateKey)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: str, key_path: str) -> None:
        """Write the certificate (0644) and the key (0600) as PEM files."""
        _write_file(key_path, self.key_pem, 0o600)
        _write_file(cert_path, self.cert_pem, 0o644)


@dataclass(frozen=True)
class SelfSigned:
    """Where ensure_self_signed put each file, and which of them it (re)wrote this time."""

    cert_dir: str
    ca_file: str  # serving CA: the APIService caBundle, kubectl's certificate-authority
    ca_key_file: str
    cert_file: str  # serving certificate
    key_file: str
    client_ca_file: str  # verifies client certificates (x509 authentication)
    client_ca_key_file: str
    admin_cert_file: str  # CN=kext-admin, O=system:masters
    admin_key_file: str
    kubeconfig: str
    written: tuple[str, ...] = ()


def new_ca(cn: str, days: int = CA_DAYS) -> KeyPair:
    """A new self-signed certificate authority (ECDSA P-256) called cn."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def issue_cert(
    ca: KeyPair,
    cn: str,
    orgs: Sequence[str] = (),
    hosts: Sequence[str] = (),
    client: bool = False,
    days: int = CERT_DAYS,
    peer: bool = False,
) -> KeyPair:
    """A certificate signed by ca: a client certificate (CN = user, O = groups, clientAuth)
    when client is true, else a serving certificate (serverAuth) for hosts, which may be DNS
    names or IP addresses; with peer, both (an etcd member serves and dials its peers)."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in orgs]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    now = _now()
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if peer else [usage]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    names = _general_names(hosts)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


# -- reading PEM files: the one place kext parses certificates and keys (cryptography's
# loaders), with errors that name the file and say what is wrong with it.


class PEMError(ValueError):
    """A certificate or key file kext cannot use; the message names the file and why."""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as error:
        raise PEMError(f"{path}: cannot read: {error.strerror or error}") from None


def load_certificates(path: str) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order (a serving chain, leaf first, or a CA
    bundle); blocks of other kinds are skipped. PEMError when the file cannot be read, holds
    no certificate, or one does not parse."""
    data = _read(path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as error:
        if b"CERTIFICATE-----" not in data:
            raise PEMError(f"{path}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the "
                           "file") from None
        raise PEMError(f"{path}: a PEM certificate in the file does not parse: {error}") from None


def load_private_key(path: str) -> PrivateKey:
    """The unencrypted PEM private key in a file (PKCS#8, or the traditional RSA and EC
    forms). PEMError when the file cannot be read, holds no key, the key is encrypted, or
    it does not parse."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise PEMError(f"{path}: the private key is encrypted; kext needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm) as error:
        if b"PRIVATE KEY-----" not in data:
            raise PEMError(f"{path}: no PEM private key (-----BEGIN PRIVATE KEY-----) in the "
                           "file") from None
        raise PEMError(f"{path}: the PEM private key does not parse: {error}") from None
    if not isinstance(key, PRIVATE_KEY_TYPES):
        raise PEMError(f"{path}: a {type(key).__name__} cannot sign TLS handshakes")
    return key


def load_serving_pair(cert_path: str, key_path: str) -> tuple[list[x509.Certificate], PrivateKey]:
    """A certificate chain (leaf first) and the private key of its leaf; PEMError when either
    file is unusable or the key belongs to another certificate."""
    chain = load_certificates(cert_path)
    key = load_private_key(key_path)
    if key.public_key() != chain[0].public_key():
        raise PEMError(f"{key_path}: the private key does not belong to the first certificate "
                       f"in {cert_path}")
    return chain, key


def load_key_pair(cert_path: str, key_path: str) -> KeyPair | None:
    """The PEM certificate and EC key kext generated at these paths, or None when either is
    missing, unreadable, not an EC key, or they do not belong together."""
    try:
        chain, key = load_serving_pair(cert_path, key_path)
    except PEMError:
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return KeyPair(chain[0], key)


def serving_hosts(hosts: Sequence[str], server_url: str = "") -> list[str]:
    """The names a serving certificate must carry: localhost, the loopback addresses, hosts
    and the host of server_url, without duplicates or unspecified addresses (0.0.0.0, ::)."""
    candidates = ["localhost", "127.0.0.1", "::1", *hosts]
    if server_url:
        with contextlib.suppress(ValueError):
            candidates.append(urlsplit(server_url).hostname or "")
    out: list[str] = []
    for host in candidates:
        host = host.strip().strip("[]")
        if not host:
            continue
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            host = host.lower()
        else:
            if address.is_unspecified:
                continue
            host = str(address)
        if host not in out:
            out.append(host)
    return out


def dialable_url(server_url: str) -> str:
    """server_url with an unspecified host (0.0.0.0, ::), which a server binds but a client
    cannot verify a certificate for, replaced by the matching loopback address."""
    try:
        parts = urlsplit(server_url)
        address = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return server_url
    if not address.is_unspecified:
        return server_url
    loopback = "127.0.0.1" if address.version == 4 else "[::1]"
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=loopback + port).geturl()


def ensure_self_signed(cert_dir: str, hosts: list[str], server_url: str) -> SelfSigned:
    """Make sure cert_dir holds a usable serving CA and certificate (for localhost, 127.0.0.1,
    ::1, hosts and server_url's host), a client CA, an admin client certificate and a
    kubeconfig for server_url (0.0.0.0 there becomes 127.0.0.1), reusing whatever is there
    and still valid."""
    os.makedirs(cert_dir, mode=0o700, exist_ok=True)
    paths = SelfSigned(
        cert_dir=cert_dir,
        ca_file=os.path.join(cert_dir, "ca.crt"),
        ca_key_file=os.path.join(cert_dir, "ca.key"),
        cert_file=os.path.join(cert_dir, "apiserver.crt"),
        key_file=os.path.join(cert_dir, "apiserver.key"),
        client_ca_file=os.path.join(cert_dir, "client-ca.crt"),
        client_ca_key_file=os.path.join(cert_dir, "client-ca.key"),
        admin_cert_file=os.path.join(cert_dir, "admin.crt"),
        admin_key_file=os.path.join(cert_dir, "admin.key"),
        kubeconfig=os.path.join(cert_dir, "kubeconfig"),
    )
    server_url = dialable_url(server_url)
    san = serving_hosts(hosts, server_url)
    written: list[str] = []
    stamp = int(_now().timestamp())
    with _locked(cert_dir):
        ca = load_key_pair(paths.ca_file, paths.ca_key_file)
        if ca is None or _expiring(ca.cert):
            ca = new_ca(f"kext-ca@{stamp}")
            ca.write(paths.ca_file, paths.ca_key_file)
            written += [paths.ca_file, paths.ca_key_file]
        serving = load_key_pair(paths.cert_file, paths.key_file)
        if serving is None or not _still_good(serving, ca) or not _covers(serving.cert, san):
            serving = issue_cert(ca, "kext", hosts=san)
            serving.write(paths.cert_file, paths.key_file)
            written += [paths.cert_file, paths.key_file]

        client_ca = load_key_pair(paths.client_ca_file, paths.client_ca_key_file)
        if client_ca is None or _expiring(client_ca.cert):
            client_ca = new_ca(f"kext-client-ca@{stamp}")
            client_ca.write(paths.client_ca_file, paths.client_ca_key_file)
            written += [paths.client_ca_file, paths.client_ca_key_file]
        admin = load_key_pair(paths.admin_cert_file, paths.admin_key_file)
        if admin is None or not _still_good(admin, client_ca):
            admin = issue_cert(client_ca, ADMIN_USER, orgs=[ADMIN_GROUP], client=True)
            admin.write(paths.admin_cert_file, paths.admin_key_file)
            written += [paths.admin_cert_file, paths.admin_key_file]

        config = kubeconfig(server_url, ca.cert_pem, admin, ADMIN_USER)
        try:
            with open(paths.kubeconfig, "rb") as f:
                current = f.read()
        except OSError:
            current = b""
        if current != config:
            _write_file(paths.kubeconfig, config, 0o600)
            written.append(paths.kubeconfig)
    return replace(paths, written=tuple(written))


def kubeconfig(server_url: str, ca_pem: bytes, client: KeyPair, user: str) -> bytes:
    """A kubeconfig (YAML) with one cluster, user and context named kext: server_url trusted
    with ca_pem, authenticating with the client certificate."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kext",
                "cluster": {"server": server_url, "certificate-authority-data": b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(client.cert_pem),
                    "client-key-data": b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": "kext", "context": {"cluster": "kext", "user": user}}],
        "current-context": "kext",
        "preferences": {},
    }
    return yaml.safe_dump(document, sort_keys=False).encode("utf-8")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _expiring(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc > now or cert.not_valid_after_utc - RENEW_BEFORE < now


def _still_good(pair: KeyPair, ca: KeyPair) -> bool:
    """Whether pair was signed by ca and is not about to expire."""
    if _expiring(pair.cert) or pair.cert.issuer != ca.cert.subject:
        return False
    try:
        pair.cert.verify_directly_issued_by(ca.cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _covers(cert: x509.Certificate, hosts: Sequence[str]) -> bool:
    """Whether cert's subjectAltName holds every one of hosts."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = set(_general_names(san.get_values_for_type(x509.DNSName)))
    present.update(x509.IPAddress(ip) for ip in san.get_values_for_type(x509.IPAddress))
    return set(_general_names(hosts)) <= present


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host.lower()))
    return names


def _write_file(path: str, data: bytes, mode: int) -> None:
    """Replace path with data atomically, created with mode (never briefly world-readable)."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(cert_dir: str) -> Iterator[None]:
    """Serialise generation between kext processes starting at once on one directory."""
    fd = os.open(os.path.join(cert_dir, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- certificates for a cluster install (kext certs --service, kext manifests) ----------------


@dataclass(frozen=True)
class ServiceCerts:
    """A CA and a Service's serving certificate: the Secret and the APIService caBundle of a
    cluster install."""

    ca: KeyPair
    serving: KeyPair
    ca_file: str
    ca_key_file: str
    cert_file: str
    key_file: str
    hosts: tuple[str, ...]
    written: tuple[str, ...] = ()


@dataclass(frozen=True)
class EtcdCerts:
    """The bundled etcd's CA, the certificate every member serves and dials peers with, and
    kext's client certificate, each with its files."""

    ca: KeyPair
    member: KeyPair
    client: KeyPair
    files: tuple[str, ...]
    written: tuple[str, ...] = ()


def service_hosts(service: str, namespace: str, cluster_domain: str = "cluster.local") -> list[str]:
    """The DNS names a Service answers to inside the cluster, the one kube-apiserver's
    aggregator dials (`<service>.<namespace>.svc`) among them."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]


def ensure_service_certs(
    cert_dir: str,
    service: str,
    namespace: str,
    ca_file: str = "",
    ca_key_file: str = "",
    cluster_domain: str = "cluster.local",
) -> ServiceCerts:
    """Make sure cert_dir holds a serving certificate (tls.crt, tls.key) for the Service's DNS
    names, issued by the CA at ca_file/ca_key_file when given (read, never rewritten), else by
    cert_dir's own ca.crt/ca.key (generated when missing or expiring). What is there and still
    good is kept, so a second run gives the same caBundle. Raises ValueError when a given CA
    cannot be used, OSError when a file cannot be read or written."""
    os.makedirs(cert_dir, mode=0o700, exist_ok=True)
    hosts = service_hosts(service, namespace, cluster_domain)
    cert_file = os.path.join(cert_dir, "tls.crt")
    key_file = os.path.join(cert_dir, "tls.key")
    written: list[str] = []
    with _locked(cert_dir):
        if ca_file:
            ca = _given_ca(ca_file, ca_key_file)
        else:
            ca_file = os.path.join(cert_dir, "ca.crt")
            ca_key_file = os.path.join(cert_dir, "ca.key")
            ca = _kept_ca(ca_file, ca_key_file, f"{service}.{namespace}-ca", written)
        serving = _kept_cert(
            cert_file, key_file, ca, hosts, written, lambda: issue_cert(ca, hosts[2], hosts=hosts)
        )
    return ServiceCerts(ca, serving, ca_file, ca_key_file, cert_file, key_file, tuple(hosts),
                        tuple(written))


def ensure_etcd_certs(cert_dir: str, member_hosts: Sequence[str], client_cn: str) -> EtcdCerts:
    """Make sure cert_dir holds a bundled etcd's CA (etcd-ca.*), the members' certificate for
    member_hosts with serverAuth and clientAuth (etcd-member.*) and a client certificate called
    client_cn (etcd-client.*), keeping what is there and still good."""
    os.makedirs(cert_dir, mode=0o700, exist_ok=True)
    paths = [os.path.join(cert_dir, f"etcd-{part}.{ext}")
             for part in ("ca", "member", "client") for ext in ("crt", "key")]
    written: list[str] = []
    with _locked(cert_dir):
        ca = _kept_ca(paths[0], paths[1], "etcd-ca", written)
        member = _kept_cert(paths[2], paths[3], ca, member_hosts, written,
                            lambda: issue_cert(ca, "etcd", hosts=member_hosts, peer=True))
        client = _kept_cert(paths[4], paths[5], ca, (), written,
                            lambda: issue_cert(ca, client_cn, client=True))
    return EtcdCerts(ca, member, client, tuple(paths), tuple(written))


def _given_ca(ca_file: str, ca_key_file: str) -> KeyPair:
    """The CA a user gave: its key from ca_key_file, or the .key file beside ca_file."""
    key_file = ca_key_file or os.path.splitext(ca_file)[0] + ".key"
    for path in (ca_file, key_file):
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file (the CA needs its certificate and its key)")
    ca = load_key_pair(ca_file, key_file)
    if ca is None:
        raise ValueError(f"{ca_file}, {key_file}: not a PEM certificate and its EC private key")
    if _expiring(ca.cert):
        raise ValueError(f"{ca_file}: the CA has expired or expires within "
                         f"{RENEW_BEFORE.days} days")
    return ca


def _kept_ca(cert_file: str, key_file: str, cn: str, written: list[str]) -> KeyPair:
    ca = load_key_pair(cert_file, key_file)
    if ca is None or _expiring(ca.cert):
        stamp = int(_now().timestamp())
        ca = new_ca(f"{cn}@{stamp}")
        ca.write(cert_file, key_file)
        written += [cert_file, key_file]
    return ca


def _kept_cert(cert_file: str, key_file: str, ca: KeyPair, hosts: Sequence[str],
               written: list[str], issue: Callable[[], KeyPair]) -> KeyPair:
    pair = load_key_pair(cert_file, key_file)
    if pair is None or not _still_good(pair, ca) or (hosts and not _covers(pair.cert, hosts)):
        pair = issue()
        pair.write(cert_file, key_file)
        written += [cert_file, key_file]
    return pair
