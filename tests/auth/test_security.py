"""A server's authentication and authorization as CompletedConfig.new_security builds them
from server.yaml and the stand-in cluster: which CA comes from where with fromCluster (a file
in server.yaml wins over the ConfigMap's), and what the TLS handshake is given to follow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from kext.auth.authentication import Credentials
from kext.certs import KeyPair, issue_cert, new_ca
from kext.config import EtcdConfig, ServerConfig
from kext.kube import KubeClient, load_kubeconfig
from kext.server.config import CompletedConfig, new_config
from kext.server.process import ServingCertificates
from tests.kube_apiserver import KubeAPIServer

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client(kube_apiserver: KubeAPIServer, tmp_path: Path,
                 reactor: Any) -> AsyncIterator[KubeClient]:
    access = load_kubeconfig(str(kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")))
    built = KubeClient(access, reactor=reactor, timeout=5, retries=1)
    try:
        yield built
    finally:
        await built.close()


def completed(options: ServerConfig, client_ca_files: tuple[str, ...] = ()) -> CompletedConfig:
    serving = ServingCertificates("unused.crt", "unused.key", client_ca_files,
                                  "https://127.0.0.1:8443", "")
    return new_config(options, serving, EtcdConfig(["http://127.0.0.1:2379"])).complete()


def presenting(pair: KeyPair, user: str = "") -> Credentials:
    headers = [("x-remote-user", user)] if user else []
    return Credentials([pair.cert.public_bytes(serialization.Encoding.DER)], headers, "/apis")


async def test_a_ca_file_in_server_yaml_wins_over_the_configmaps(
        kube_apiserver: KubeAPIServer, client: KubeClient, tmp_path: Path) -> None:
    kube_apiserver.put_extension_apiserver_authentication()
    own_proxy_ca = new_ca("own front-proxy")
    (tmp_path / "proxy-ca.crt").write_bytes(own_proxy_ca.cert_pem)
    options = ServerConfig()
    options.authentication.from_cluster = True
    options.authentication.request_header.client_ca_file = str(tmp_path / "proxy-ca.crt")
    security = completed(options, (str(tmp_path / "proxy-ca.crt"),)).new_security(kube=client)
    # only the client CA comes from the cluster: the TLS handshake follows just that one
    assert [b.name for b in security.cluster_client_cas] == ["client-ca-file (cluster)"]
    await security.start()
    try:
        authenticator = security.authenticator
        own = issue_cert(own_proxy_ca, "anyone", client=True)  # no allowed names configured
        user = await authenticator.authenticate(presenting(own, "bob"))
        assert user is not None and user.name == "bob"
        clusters_proxy = issue_cert(kube_apiserver.front_proxy_ca, "front-proxy-client",
                                    client=True)
        assert await authenticator.authenticate(presenting(clusters_proxy, "bob")) is None
        # the cluster's client CA is trusted for x509 users
        clusters_user = issue_cert(kube_apiserver.client_ca, "carol", ["ops"], client=True)
        user = await authenticator.authenticate(presenting(clusters_user))
        assert user is not None and (user.name, user.groups) == (
            "carol", ("ops", "system:authenticated"))
    finally:
        await security.stop()


async def test_without_from_cluster_nothing_is_asked(client: KubeClient,
                                                    kube_apiserver: KubeAPIServer) -> None:
    security = completed(ServerConfig()).new_security(kube=client)
    assert security.configmap is None and security.cluster_client_cas == ()
    await security.start()
    await security.stop()
    assert not kube_apiserver.requests
