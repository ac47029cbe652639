"""Fixtures for auth's tests: kext's kube client to the kube-apiserver stand-in of the test
(tests/conftest.py's `kube_apiserver`, on the test's reactor)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from kext.kube import KubeClient, load_kubeconfig
from tests.kube_apiserver import KubeAPIServer


@pytest_asyncio.fixture
async def client(kube_apiserver: KubeAPIServer, tmp_path: Path,
                 reactor: Any) -> AsyncIterator[KubeClient]:
    access = load_kubeconfig(str(kube_apiserver.write_kubeconfig(tmp_path / "kubeconfig")))
    built = KubeClient(access, reactor=reactor, timeout=5, retries=1)
    try:
        yield built
    finally:
        await built.close()
