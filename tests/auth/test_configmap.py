"""The cluster's extension-apiserver-authentication ConfigMap followed from the stand-in:
read at start-up, changes taken as they are watched, what a missing ConfigMap, an emptied
key, a deleted ConfigMap and a 403 mean, as k8s.io/apiserver has them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest

from kext.auth.authentication import NO_REQUEST_HEADERS, RequestHeaderAuthenticator
from kext.auth.ca import CABundle
from kext.auth.configmap import AuthenticationConfigMap, ClusterAuthenticationError
from kext.certs import new_ca
from kext.kube import KubeClient
from tests.kube_apiserver import KubeAPIServer

pytestmark = pytest.mark.asyncio


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def follower(client: KubeClient) -> AuthenticationConfigMap:
    return AuthenticationConfigMap(
        client, CABundle("client-ca"),
        RequestHeaderAuthenticator(CABundle("requestheader-ca"), NO_REQUEST_HEADERS))


async def test_read_at_start_then_followed(kube_apiserver: KubeAPIServer,
                                           client: KubeClient) -> None:
    kube_apiserver.put_extension_apiserver_authentication()
    configmap = follower(client)
    assert configmap.client_ca is not None and configmap.request_header is not None
    await configmap.start()
    try:
        request_header = configmap.request_header
        assert configmap.client_ca.certificates == (kube_apiserver.client_ca.cert,)
        assert request_header.ca.certificates == (kube_apiserver.front_proxy_ca.cert,)
        names = request_header.names
        assert (names.allowed_names, names.username_headers, names.uid_headers,
                names.group_headers, names.extra_prefixes) == (
            ("front-proxy-client",), ("x-remote-user",), ("x-remote-uid",),
            ("x-remote-group",), ("x-remote-extra-",))
        # a rotated front-proxy CA and new allowed names arrive by the watch
        rotated = new_ca("rotated-front-proxy-ca")
        kube_apiserver.put_extension_apiserver_authentication(**{
            "requestheader-client-ca-file": rotated.cert_pem.decode(),
            "requestheader-allowed-names": json.dumps(["aggregator"])})
        await until(lambda: request_header.ca.certificates == (rotated.cert,))
        assert request_header.names.allowed_names == ("aggregator",)
        # an emptied or broken CA key keeps the last CA; the header lists follow as they are
        version = request_header.ca.version
        kube_apiserver.put_extension_apiserver_authentication(**{
            "requestheader-client-ca-file": "", "client-ca-file": "not a certificate",
            "requestheader-allowed-names": ""})
        await until(lambda: request_header.names.allowed_names == ())
        assert request_header.ca.certificates == (rotated.cert,)
        assert request_header.ca.version == version
        assert configmap.client_ca.certificates == (kube_apiserver.client_ca.cert,)
        # a deleted ConfigMap keeps everything (seen once it is back, with no CA of its own)
        kube_apiserver.delete("v1", "ConfigMap", "extension-apiserver-authentication",
                              "kube-system")
        kube_apiserver.put_extension_apiserver_authentication(**{
            "requestheader-client-ca-file": "", "client-ca-file": "",
            "requestheader-allowed-names": json.dumps(["after-delete"])})
        await until(lambda: request_header.names.allowed_names == ("after-delete",))
        assert request_header.ca.certificates == (rotated.cert,)
        assert configmap.client_ca.certificates == (kube_apiserver.client_ca.cert,)
    finally:
        await configmap.stop()


async def test_missing_at_start_trusts_nothing_until_it_appears(
        kube_apiserver: KubeAPIServer, client: KubeClient) -> None:
    configmap = follower(client)
    assert configmap.client_ca is not None and configmap.request_header is not None
    await configmap.start()
    try:
        assert not configmap.client_ca.loaded and not configmap.request_header.ca.loaded
        assert configmap.request_header.names == NO_REQUEST_HEADERS
        kube_apiserver.put_extension_apiserver_authentication()
        await until(lambda: configmap.request_header is not None
                    and configmap.request_header.ca.loaded)
        assert configmap.request_header.names.username_headers == ("x-remote-user",)
    finally:
        await configmap.stop()


async def test_a_403_names_the_role_kext_needs(kube_apiserver: KubeAPIServer,
                                                client: KubeClient) -> None:
    kube_apiserver.put_extension_apiserver_authentication()
    kube_apiserver.access.deny(resource="configmaps", namespace="kube-system")
    with pytest.raises(ClusterAuthenticationError) as refused:
        await follower(client).start()
    message = str(refused.value)
    assert "403" in message and "\n" not in message
    assert "Role extension-apiserver-authentication-reader in kube-system" in message


async def test_kube_apiserver_unreachable_at_start_is_an_error(kube_apiserver: KubeAPIServer,
                                                               client: KubeClient) -> None:
    kube_apiserver.stop()
    with pytest.raises(ClusterAuthenticationError, match="cannot read configmap kube-system/"):
        await follower(client).start(timeout=2)
