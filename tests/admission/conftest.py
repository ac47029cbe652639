"""Fixtures for admission's tests: the HTTPS webhook server, and a Twisted asyncio reactor on
the test's own event loop (built, not installed: each test has its own loop)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

from tests.webhook_server import WebhookServer


@pytest.fixture
def webhook_server(tmp_path: Path) -> Iterator[WebhookServer]:
    server = WebhookServer(tmp_path / "webhook")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture
async def reactor() -> AsyncIterator[Any]:
    """An asyncio reactor running on this test's loop (its thread pool started for name
    resolution, as reactor.run() would)."""
    built = AsyncioSelectorReactor(asyncio.get_running_loop())
    pool = built.getThreadPool()
    pool.start()
    try:
        yield built
    finally:
        pool.stop()
        built.removeAll()
