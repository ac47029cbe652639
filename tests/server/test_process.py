"""The process-level parts without a server: serving certificates (configured or
self-signed) and the listening socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from twisted.internet.error import CannotListenError

from kext.config import ServerConfig
from kext.server.app import announce
from kext.server.process import Process, listen, serving_certificates


def test_self_signed_material_when_no_certificate_is_configured(tmp_path: Path) -> None:
    options = ServerConfig()
    options.serving.bind_address, options.serving.port = "0.0.0.0", 9443
    options.serving.cert_dir = str(tmp_path / "certs")
    certificates = serving_certificates(options)
    assert certificates.url == "https://127.0.0.1:9443"  # dialable, and in the kubeconfig
    assert certificates.cert_file == str(tmp_path / "certs" / "apiserver.crt")
    assert certificates.client_ca_files == (str(tmp_path / "certs" / "client-ca.crt"),)
    assert "https://127.0.0.1:9443" in Path(certificates.kubeconfig).read_text()


def test_configured_certificate_and_client_cas(tmp_path: Path) -> None:
    options = ServerConfig()
    options.serving.bind_address = "::1"
    options.serving.cert_file, options.serving.key_file = "/etc/kext/tls.crt", "/etc/kext/tls.key"
    options.authentication.client_ca_file = "/etc/kext/client-ca.crt"
    options.authentication.request_header.client_ca_file = "/etc/kext/front-proxy-ca.crt"
    certificates = serving_certificates(options)
    assert (certificates.cert_file, certificates.key_file) == ("/etc/kext/tls.crt",
                                                               "/etc/kext/tls.key")
    assert certificates.client_ca_files == ("/etc/kext/client-ca.crt",
                                            "/etc/kext/front-proxy-ca.crt")
    assert (certificates.url, certificates.kubeconfig) == ("https://[::1]:8443", "")


def test_a_port_in_use_is_reported_as_twisted_reports_it() -> None:
    first = listen("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        with pytest.raises(CannotListenError) as info:
            listen("127.0.0.1", port)
        assert str(info.value) == (f"Couldn't listen on 127.0.0.1:{port}: "
                                   "[Errno 98] Address already in use.")
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.close()  # the first socket listens
    finally:
        first.close()


@pytest.mark.asyncio
async def test_a_process_with_etcd_configured_prepares_certificates_and_a_socket(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = ServerConfig()
    options.serving.port = 0  # any free port
    options.serving.cert_dir = str(tmp_path / "certs")
    options.storage.etcd.endpoints = ["http://127.0.0.1:2379"]
    process = Process(options)
    certificates = await process.start()
    assert process.embedded is None  # etcd is configured: no embedded one
    assert process.etcd.endpoints == ("http://127.0.0.1:2379",)
    assert Path(certificates.cert_file).exists() and certificates.kubeconfig
    listener = process.listen()
    assert process.listen() is listener  # opened once
    port = listener.getsockname()[1]
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    process.close_listener()
    assert listener.fileno() == -1
    await process.stop()

    announce(options, certificates)
    assert capsys.readouterr().out.splitlines() == [
        f"kext is serving no resources on {certificates.url}",
        f"  try: kubectl --kubeconfig {certificates.kubeconfig} get widgets",
        f"  health: curl -k {certificates.url}/readyz?verbose",
    ]


def test_listen_on_ipv6_loopback() -> None:
    try:
        sock = listen("::1", 0)
    except CannotListenError:
        pytest.skip("no IPv6 loopback on this machine")
    try:
        assert sock.family == socket.AF_INET6
        socket.create_connection(("::1", sock.getsockname()[1]), timeout=5).close()
    finally:
        sock.close()
