"""The listener's TLS material: what a client receives in the handshake, before and after the
serving files change, and which client certificates it accepts as the cluster's CAs change
(handshakes run in memory, client and server over memory BIOs)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL

from kext.auth.ca import CABundle
from kext.certs import KeyPair, PEMError, issue_cert, new_ca
from kext.server.tls import ReloadingContextFactory


def served_chain(server_context: SSL.Context) -> list[x509.Certificate]:
    """The certificates a client is sent, leaf first."""
    client = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
    client.set_connect_state()
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(SSL.WantReadError):
                side.do_handshake()
        for sender, receiver in ((client, server), (server, client)):
            with contextlib.suppress(SSL.WantReadError):
                receiver.bio_write(sender.bio_read(65536))
        chain = client.get_peer_cert_chain(as_cryptography=True)
        if chain and client.get_state_string() == b"SSL negotiation finished successfully":
            return list(chain)
    raise AssertionError("the TLS handshake did not finish")


def write(path: Path, data: bytes, generation: int) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(generation * 10**9, generation * 10**9))  # an mtime that surely differs


@pytest.fixture
def ca() -> KeyPair:
    return new_ca("serving-ca")


def test_the_whole_chain_is_served_and_replaced_when_the_files_change(
    tmp_path: Path, ca: KeyPair
) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = issue_cert(ca, "kext", hosts=["localhost"])
    write(cert_file, first.cert_pem + ca.cert_pem, 1)
    write(key_file, first.key_pem, 1)
    tls = ReloadingContextFactory(str(cert_file), str(key_file), [])
    assert served_chain(tls.getContext()) == [first.cert, ca.cert]
    assert not tls.reload_if_changed()

    second = issue_cert(ca, "kext", hosts=["localhost"])
    write(cert_file, second.cert_pem, 2)
    write(key_file, second.key_pem, 2)
    assert tls.reload_if_changed()
    assert served_chain(tls.getContext()) == [second.cert]


def test_an_unusable_new_file_keeps_the_current_certificate(
    tmp_path: Path, ca: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    pair = issue_cert(ca, "kext")
    write(cert_file, pair.cert_pem, 1)
    write(key_file, pair.key_pem, 1)
    tls = ReloadingContextFactory(str(cert_file), str(key_file), [])

    # A rotation caught half-way: the new certificate beside the old key.
    write(cert_file, issue_cert(ca, "kext").cert_pem, 2)
    assert not tls.reload_if_changed()
    assert "does not belong to the first certificate" in caplog.text
    assert served_chain(tls.getContext()) == [pair.cert]


def test_a_bad_client_ca_bundle_stops_start_up_with_its_name(tmp_path: Path, ca: KeyPair) -> None:
    cert_file, key_file, bundle = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt"
    pair = issue_cert(ca, "kext")
    write(cert_file, pair.cert_pem, 1)
    write(key_file, pair.key_pem, 1)
    write(bundle, b"not a certificate\n", 1)
    with pytest.raises(PEMError, match=f"^{bundle}: no PEM certificate"):
        ReloadingContextFactory(str(cert_file), str(key_file), [str(bundle)])


def handshake(server_context: SSL.Context, client: KeyPair | None) -> bool:
    """Whether a client presenting client (or no certificate) completes the handshake."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if client is not None:
        context.use_certificate(client.cert)  # type: ignore[arg-type]
        context.use_privatekey(client.key)  # type: ignore[arg-type]
    near, far = SSL.Connection(context, None), SSL.Connection(server_context, None)
    near.set_connect_state()
    far.set_accept_state()
    for _ in range(10):
        try:
            for side in (near, far):
                with contextlib.suppress(SSL.WantReadError):
                    side.do_handshake()
            for sender, receiver in ((near, far), (far, near)):
                with contextlib.suppress(SSL.WantReadError):
                    receiver.bio_write(sender.bio_read(65536))
            # TLS 1.3: the server verifies the client's certificate after the client is done
            with contextlib.suppress(SSL.WantReadError, SSL.ZeroReturnError):
                far.recv(1)
        except SSL.Error:
            return False
        if far.get_state_string() == b"SSL negotiation finished successfully" and \
                near.get_state_string() == b"SSL negotiation finished successfully":
            return True
    return False


def test_client_cas_from_the_cluster_are_followed(tmp_path: Path, ca: KeyPair) -> None:
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    pair = issue_cert(ca, "kext")
    write(cert_file, pair.cert_pem, 1)
    write(key_file, pair.key_pem, 1)
    old_ca, new_ca_ = new_ca("front-proxy"), new_ca("rotated front-proxy")
    old_proxy = issue_cert(old_ca, "front-proxy-client", client=True)
    new_proxy = issue_cert(new_ca_, "front-proxy-client", client=True)
    cluster = CABundle("requestheader-client-ca-file")
    tls = ReloadingContextFactory(str(cert_file), str(key_file), [], [cluster])
    assert handshake(tls.getContext(), None)  # nothing to verify against yet
    cluster.set([old_ca.cert])
    assert handshake(tls.getContext(), old_proxy)
    assert handshake(tls.getContext(), None)  # requested, never required
    assert not handshake(tls.getContext(), new_proxy)
    cluster.set([new_ca_.cert])
    assert handshake(tls.getContext(), new_proxy)
    assert not handshake(tls.getContext(), old_proxy)
