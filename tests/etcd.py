"""A real etcd for tests: free loopback ports, a temporary data dir, restartable in place.

`EtcdServer(data_dir).start()` runs a one-member etcd and waits until it answers /health;
`stop()` and `start()` again restart it on the same ports with the same data (for tests of
etcd restarts). `tls=True` serves https and requires client certificates (see `certs`).

The binary is the one kext's embedded mode picks (the `embedded` extra's etcd 3.5, which the
`test` extra brings too, before an older etcd on PATH), or `$KEXT_TEST_ETCD` (a path, or a
name on PATH) to run the suite on another: `KEXT_TEST_ETCD=/usr/bin/etcd` for Debian's 3.4.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kext.storage.embedded import (
    HOST,
    describe_etcd,
    etcd_command,
    find_etcd_binary,
    free_port,
)

ETCD_ENV = "KEXT_TEST_ETCD"


@functools.cache
def etcd_binary() -> str:
    """The etcd binary the tests run: $KEXT_TEST_ETCD, else find_etcd_binary()'s."""
    chosen = os.environ.get(ETCD_ENV, "")
    if not chosen:
        return find_etcd_binary()
    found = shutil.which(chosen)
    if found is None:
        raise RuntimeError(f"{ETCD_ENV}={chosen}: no such executable")
    return found


def etcd_description() -> str:
    """Which etcd the tests run, for the session header."""
    chosen = " (from $" + ETCD_ENV + ")" if os.environ.get(ETCD_ENV) else ""
    return describe_etcd(etcd_binary()) + chosen


def scratch_dir(prefix: str) -> Path:
    """A new temporary directory, in memory (/dev/shm) when possible: etcd fsyncs each write."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: the CA, etcd's serving pair and a client pair, all signed by the CA."""

    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_tls_files(directory: Path) -> TLSFiles:
    """A CA with a serving certificate for 127.0.0.1/localhost and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)

    def write_key(name: str, key: ec.EllipticCurvePrivateKey) -> str:
        path = directory / name
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
        return str(path)

    def write_cert(name: str, cert: x509.Certificate) -> str:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    def builder(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("kext-test-ca", "kext-test-ca", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        builder("etcd", "kext-test-ca", server_key)
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address(HOST)),
            ]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        builder("kext", "kext-test-ca", client_key)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return TLSFiles(
        ca=write_cert("ca.pem", ca),
        server_cert=write_cert("etcd.pem", server),
        server_key=write_key("etcd-key.pem", server_key),
        client_cert=write_cert("client.pem", client),
        client_key=write_key("client-key.pem", client_key),
    )


class EtcdServer:
    """One etcd process for tests, on ports picked once (so a restart keeps its endpoint)."""

    def __init__(
        self, data_dir: Path, *, tls: TLSFiles | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.data_dir = data_dir
        self.tls = tls
        # A one-member cluster elects itself after an election timeout: keep it short.
        self.extra = ("--heartbeat-interval", "10", "--election-timeout", "100", *extra)
        self.binary = etcd_binary()
        self.client_port = free_port()
        self.peer_port = free_port()
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://{HOST}:{self.client_port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log = data_dir.with_name(data_dir.name + ".log")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start etcd (again) and wait until it answers /health."""
        assert not self.running, "etcd is already running"
        args = etcd_command(
            self.binary,
            name="test",
            data_dir=str(self.data_dir),
            client_port=self.client_port,
            peer_port=self.peer_port,
            tls=(self.tls.ca, self.tls.server_cert, self.tls.server_key) if self.tls else None,
            extra=self.extra,
        )
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self._process.returncode}: {self._log.read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not become healthy within {timeout}s")
            time.sleep(0.05)

    def healthy(self) -> bool:
        """Whether etcd answers /health with health true."""
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=self.tls.ca)
            context.load_cert_chain(self.tls.client_cert, self.tls.client_key)
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=2,
                                        context=context) as response:
                return b'"health":"true"' in response.read()
        except (OSError, urllib.error.URLError):
            return False

    def metrics(self) -> str:
        """etcd's Prometheus metrics text (plain http only)."""
        with urllib.request.urlopen(f"{self.endpoint}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text

    def pause(self) -> None:
        """Freeze etcd (SIGSTOP): it keeps its connections but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused etcd run again (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop etcd (SIGTERM, SIGKILL after timeout); the ports and data stay for start()."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # in case it was paused
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EtcdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


async def until(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll condition (with a short pause between tries) until it is true; fail after timeout.
    Tests wait for state this way, never with a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
