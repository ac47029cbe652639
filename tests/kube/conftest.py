"""Fixtures for the kube client's tests: the kube-apiserver stand-in, and a Twisted asyncio
reactor on the test's own event loop (built, not installed: each test has its own loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

from tests.kube_apiserver import KubeAPIServer


@pytest.fixture
def kube_apiserver(tmp_path: Path) -> Iterator[KubeAPIServer]:
    """A running kube-apiserver stand-in, stopped after the test."""
    server = KubeAPIServer(tmp_path / "kube-apiserver")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def reactor() -> AsyncIterator[Any]:
    """An asyncio reactor running on this test's loop (its thread pool started for name
    resolution, as reactor.run() would)."""
    loop = asyncio.get_running_loop()
    built = AsyncioSelectorReactor(loop)
    pool = built.getThreadPool()
    pool.start()
    try:
        yield built
    finally:
        pool.stop()
        built.removeAll()
