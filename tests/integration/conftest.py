"""Integration fixtures: one real kext process per module, on the session's real etcd; the
HTTPS stand-in for kube-apiserver (`cluster`, publishing extension-apiserver-authentication;
modules that need another one define their own) and an HTTPS admission webhook server
(`webhooks`), one each per module that asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext
from tests.kube_apiserver import KubeAPIServer
from tests.webhook_server import WebhookServer


@pytest.fixture(scope="module")
def kext(etcd_server: EtcdServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[KextProcess]:
    """A running kext serving widgets (namespaced) and gadgets (cluster-scoped)."""
    workdir: Path = tmp_path_factory.mktemp("kext")
    process = start_kext(workdir, etcd_server.endpoint)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    server = KubeAPIServer(tmp_path_factory.mktemp("kube-apiserver"))
    server.start()
    server.put_extension_apiserver_authentication()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def webhooks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookServer]:
    server = WebhookServer(tmp_path_factory.mktemp("webhook"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
