"""Fixtures for admission's tests: the HTTPS webhook server (the reactor is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.webhook_server import WebhookServer


@pytest.fixture
def webhook_server(tmp_path: Path) -> Iterator[WebhookServer]:
    server = WebhookServer(tmp_path / "webhook")
    server.start()
    try:
        yield server
    finally:
        server.stop()
