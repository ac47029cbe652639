"""An in-memory kext server per test (tests/server/inmemory.py): its stores on a MemoryStore
behind watch caches, its filter chain and router built as kext builds them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tests.server.inmemory import InMemoryServer


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[InMemoryServer]:
    """kext serving Widgets and Gadgets from memory, with its default configuration."""
    started = await InMemoryServer.start(tmp_path)
    yield started
    await started.stop()
