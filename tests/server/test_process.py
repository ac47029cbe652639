"""The process-level parts without a server: serving certificates (configured or
self-signed) and the listening socket."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from twisted.internet.error import CannotListenError

from kext.config import ServerConfig
from kext.server.process import listen, serving_certificates


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
