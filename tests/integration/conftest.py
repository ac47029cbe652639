"""Integration fixtures: one real kext process per module, on the session's real etcd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd import EtcdServer
from tests.kext_process import KextProcess, start_kext


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
