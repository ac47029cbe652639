"""Self-signed material: the chains verify, the SANs and identities are right, files are reused,
and the kubeconfig is usable by real TLS clients."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from kext.certs import (
    ADMIN_GROUP,
    ADMIN_USER,
    PEMError,
    SelfSigned,
    ensure_self_signed,
    issue_cert,
    load_certificates,
    load_key_pair,
    load_private_key,
    load_serving_pair,
    new_ca,
    serving_hosts,
)

SERVER_URL = "https://127.0.0.1:8443"
KEXT = Path(sys.executable).parent / "kext"


def _cert(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


@pytest.fixture
def material(tmp_path: Path) -> SelfSigned:
    return ensure_self_signed(
        str(tmp_path / "certs"), ["kext.kext-system.svc", "10.1.2.3", "0.0.0.0"], SERVER_URL
    )


def test_serving_chain_verifies_for_every_host(material: SelfSigned) -> None:
    ca, leaf = _cert(material.ca_file), _cert(material.cert_file)
    verifier = PolicyBuilder().store(Store([ca])).build_server_verifier
    for host in ("localhost", "kext.kext-system.svc"):
        verifier(x509.DNSName(host)).verify(leaf, [])
    for ip in ("127.0.0.1", "::1", "10.1.2.3"):
        verifier(x509.IPAddress(ipaddress.ip_address(ip))).verify(leaf, [])
    dns, ips = _sans(leaf)
    assert dns == {"localhost", "kext.kext-system.svc"}
    assert ips == {"127.0.0.1", "::1", "10.1.2.3"}  # 0.0.0.0 is not a name anyone dials


def test_openssl_verifies_both_chains(material: SelfSigned) -> None:
    for ca, cert, purpose in (
        (material.ca_file, material.cert_file, "sslserver"),
        (material.client_ca_file, material.admin_cert_file, "sslclient"),
    ):
        result = subprocess.run(
            ["openssl", "verify", "-purpose", purpose, "-CAfile", ca, cert],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_admin_is_a_system_masters_client_of_the_client_ca(material: SelfSigned) -> None:
    admin = _cert(material.admin_cert_file)
    client_ca = _cert(material.client_ca_file)
    admin.verify_directly_issued_by(client_ca)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ADMIN_USER
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == [ADMIN_GROUP] == ["system:masters"]
    usages = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # The serving CA must not vouch for clients, nor the client CA for the server.
    assert client_ca.subject != _cert(material.ca_file).subject


def test_keys_are_private(material: SelfSigned) -> None:
    for path in (
        material.ca_key_file,
        material.key_file,
        material.client_ca_key_file,
        material.admin_key_file,
        material.kubeconfig,
    ):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_second_call_reuses_everything(material: SelfSigned) -> None:
    before = {p: Path(p).read_bytes() for p in _all_files(material)}
    again = ensure_self_signed(material.cert_dir, ["kext.kext-system.svc", "10.1.2.3"], SERVER_URL)
    assert again.written == ()
    assert {p: Path(p).read_bytes() for p in _all_files(again)} == before


def test_new_host_reissues_only_the_serving_cert(material: SelfSigned) -> None:
    ca_before = Path(material.ca_file).read_bytes()
    again = ensure_self_signed(material.cert_dir, ["other.example"], SERVER_URL)
    assert set(again.written) == {again.cert_file, again.key_file}
    assert Path(again.ca_file).read_bytes() == ca_before
    assert "other.example" in _sans(_cert(again.cert_file))[0]


def test_expiring_or_missing_files_are_regenerated(material: SelfSigned) -> None:
    ca = load_key_pair(material.ca_file, material.ca_key_file)
    assert ca is not None
    short = issue_cert(ca, "kext", hosts=["localhost", "127.0.0.1", "::1"], days=10)
    short.write(material.cert_file, material.key_file)
    os.unlink(material.admin_key_file)
    again = ensure_self_signed(material.cert_dir, [], SERVER_URL)
    assert set(again.written) == {
        again.cert_file,
        again.key_file,
        again.admin_cert_file,
        again.admin_key_file,
        again.kubeconfig,  # it embeds the admin certificate
    }
    remaining = _cert(again.cert_file).not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert remaining > datetime.timedelta(days=300)


def test_a_new_ca_reissues_what_it_signed(material: SelfSigned) -> None:
    os.unlink(material.ca_file)
    again = ensure_self_signed(material.cert_dir, [], SERVER_URL)
    assert {again.ca_file, again.cert_file, again.kubeconfig} <= set(again.written)
    assert again.admin_cert_file not in again.written
    _cert(again.cert_file).verify_directly_issued_by(_cert(again.ca_file))


def test_kubeconfig_points_at_the_server_with_the_admin_identity(material: SelfSigned) -> None:
    config = yaml.safe_load(Path(material.kubeconfig).read_text())
    assert config["apiVersion"] == "v1" and config["kind"] == "Config"
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    user = next(u for u in config["users"] if u["name"] == context["context"]["user"])
    assert cluster["cluster"]["server"] == SERVER_URL
    ca_pem = base64.b64decode(cluster["cluster"]["certificate-authority-data"])
    assert ca_pem == Path(material.ca_file).read_bytes()
    cert_pem = base64.b64decode(user["user"]["client-certificate-data"])
    key_pem = base64.b64decode(user["user"]["client-key-data"])
    assert cert_pem == Path(material.admin_cert_file).read_bytes()
    assert key_pem == Path(material.admin_key_file).read_bytes()


def test_kubectl_reads_the_kubeconfig(material: SelfSigned) -> None:
    result = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            material.kubeconfig,
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server} {.contexts[0].context.user}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 127 or "not found" in result.stderr:
        pytest.skip("kubectl is not installed")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{SERVER_URL} {ADMIN_USER}"


def test_python_ssl_mutual_tls_handshake(material: SelfSigned) -> None:
    """The serving cert passes Python's hostname check, and the admin cert passes a server
    that requires client certificates from the client CA."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(material.cert_file, material.key_file)
    server_ctx.load_verify_locations(material.client_ca_file)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=material.ca_file)
    client_ctx.load_cert_chain(material.admin_cert_file, material.admin_key_file)

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peers: list[dict[str, object]] = []

    def serve(connections: int) -> None:
        for _ in range(connections):
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peers.append(dict(tls.getpeercert() or {}))
                tls.sendall(b"ok")

    hosts = ("127.0.0.1", "localhost", "::1")
    thread = threading.Thread(target=serve, args=(len(hosts),), daemon=True)
    thread.start()
    for host in hosts:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.recv(2) == b"ok"
    thread.join(timeout=10)
    listener.close()
    assert len(peers) == len(hosts)
    subject = dict(attr for rdn in peers[0]["subject"] for attr in rdn)  # type: ignore[attr-defined]
    assert subject == {"organizationName": ADMIN_GROUP, "commonName": ADMIN_USER}


def test_helpers_make_front_proxy_and_user_certs() -> None:
    front_proxy_ca = new_ca("front-proxy-ca")
    proxy = issue_cert(front_proxy_ca, "front-proxy-client", client=True)
    user = issue_cert(new_ca("users"), "alice", orgs=["dev", "ops"], client=True)
    proxy.cert.verify_directly_issued_by(front_proxy_ca.cert)
    orgs = [a.value for a in user.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["dev", "ops"]
    assert b"BEGIN PRIVATE KEY" in user.key_pem and b"BEGIN CERTIFICATE" in user.cert_pem


def test_serving_hosts_normalises() -> None:
    assert serving_hosts(["Kext.Example", "[::1]", "::", "10.0.0.1"], "https://[fd00::1]:443") == [
        "localhost",
        "127.0.0.1",
        "::1",
        "kext.example",
        "10.0.0.1",
        "fd00::1",
    ]


def test_kubeconfig_never_dials_an_unspecified_address(tmp_path: Path) -> None:
    for bound, dialed in (("0.0.0.0", "127.0.0.1"), ("[::]", "[::1]")):
        result = ensure_self_signed(str(tmp_path), [bound], f"https://{bound}:9443")
        config = yaml.safe_load(Path(result.kubeconfig).read_text())
        assert config["clusters"][0]["cluster"]["server"] == f"https://{dialed}:9443"


def test_kext_certs_command(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    args = [str(KEXT), "certs", "--dir", str(out), "--hosts", "a.example,b.example", "10.9.8.7"]
    first = subprocess.run(args, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert f"wrote {out}/ca.crt" in first.stdout
    assert f"wrote {out}/kubeconfig" in first.stdout
    ca_bundle = first.stdout.splitlines()[-1].removeprefix("caBundle: ")
    assert base64.b64decode(ca_bundle) == (out / "ca.crt").read_bytes()
    dns, ips = _sans(_cert(str(out / "apiserver.crt")))
    assert {"a.example", "b.example"} <= dns and "10.9.8.7" in ips
    second = subprocess.run(args, capture_output=True, text=True, check=False)
    assert second.returncode == 0 and "wrote" not in second.stdout


def _all_files(m: SelfSigned) -> list[str]:
    return [
        m.ca_file,
        m.ca_key_file,
        m.cert_file,
        m.key_file,
        m.client_ca_file,
        m.client_ca_key_file,
        m.admin_cert_file,
        m.admin_key_file,
        m.kubeconfig,
    ]


# -- PEM files given by the user (serving.certFile/keyFile, client CA bundles)


def test_a_chain_file_and_a_bundle_load_every_certificate(tmp_path: Path) -> None:
    ca = new_ca("bundle-ca")
    leaf = issue_cert(ca, "kext", hosts=["localhost"])
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.cert_pem + b"a comment between blocks\n" + ca.cert_pem + leaf.key_pem)
    key = tmp_path / "key.pem"
    key.write_bytes(leaf.key_pem)
    assert load_certificates(str(chain)) == [leaf.cert, ca.cert]
    certs, private_key = load_serving_pair(str(chain), str(key))
    assert certs[0] == leaf.cert and private_key.public_key() == leaf.cert.public_key()
    assert load_private_key(str(chain)).public_key() == leaf.cert.public_key()


@pytest.mark.parametrize(("cert", "key", "problem"), [
    ("missing", "key", "{cert}: cannot read: No such file or directory"),
    ("empty", "key", "{cert}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file"),
    ("key", "key", "{cert}: no PEM certificate"),
    ("corrupt", "key", "{cert}: a PEM certificate in the file does not parse"),
    ("cert", "cert", "{key}: no PEM private key"),
    ("cert", "encrypted", "{key}: the private key is encrypted; kext needs it unencrypted"),
    ("cert", "other", "{key}: the private key does not belong to the first certificate in {cert}"),
])
def test_an_unusable_pem_file_is_named_with_its_problem(
    tmp_path: Path, cert: str, key: str, problem: str
) -> None:
    pair = issue_cert(new_ca("ca"), "kext")
    encrypted = pair.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    contents = {
        "empty": b"", "key": pair.key_pem, "cert": pair.cert_pem, "encrypted": encrypted,
        "corrupt": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "other": issue_cert(new_ca("ca"), "kext").key_pem,
    }
    paths = {}
    for name in {cert, key}:
        paths[name] = tmp_path / f"{name}.pem"
        if name in contents:
            paths[name].write_bytes(contents[name])
    with pytest.raises(PEMError) as info:
        load_serving_pair(str(paths[cert]), str(paths[key]))
    assert str(info.value).startswith(problem.format(cert=paths[cert], key=paths[key]))
    assert isinstance(info.value, ValueError)
