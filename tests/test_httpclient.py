"""kext's client for webhooks, against a real HTTPS server with a CA of its own: a verified
call, pooled connections, and each way a call fails worded as kube's users read it (an error
answer, the timeout, a certificate that does not verify, nobody listening)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from twisted.internet.asyncioreactor import AsyncioSelectorReactor

from kext.certs import new_ca
from kext.httpclient import WebhookCallError, WebhookClient
from tests.conversion_webhook import ConversionWebhook
from tests.kext_process import free_port

pytestmark = pytest.mark.asyncio

REVIEW = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
          "request": {"uid": "u", "desiredAPIVersion": "test.kext.io/v1beta1", "objects": [
              {"apiVersion": "test.kext.io/v1", "kind": "Gizmo", "metadata": {"name": "g"},
               "spec": {"replicas": 1}}]}}


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[ConversionWebhook]:
    server = ConversionWebhook(tmp_path)
    yield server
    server.close()


@pytest_asyncio.fixture
async def reactor() -> AsyncIterator[Any]:
    """A twisted asyncio reactor on the test's event loop, built, not installed, with the
    thread pool that name resolution needs started (as reactor.run() would)."""
    built = AsyncioSelectorReactor(asyncio.get_running_loop())
    pool = built.getThreadPool()
    pool.start()
    try:
        yield built
    finally:
        pool.stop()
        built.removeAll()


async def test_a_verified_call_on_pooled_connections(webhook: ConversionWebhook,
                                                     reactor: Any) -> None:
    client = WebhookClient(webhook.url, webhook.ca.cert_pem, reactor=reactor)
    try:
        for _ in range(3):
            answer = await client.post(json.dumps(REVIEW).encode(), 30)
            converted = json.loads(answer)["response"]["convertedObjects"]
            assert converted[0]["spec"] == {"count": 1}
    finally:
        await client.close()
    assert len(webhook.connections) == 1  # three calls, one connection


async def test_an_error_answer_in_client_gos_words(webhook: ConversionWebhook,
                                                  reactor: Any) -> None:
    client = WebhookClient(webhook.url.replace("/convert", "/elsewhere"), webhook.ca.cert_pem,
                           reactor=reactor)
    try:
        with pytest.raises(WebhookCallError) as failed:
            await client.post(json.dumps(REVIEW).encode(), 10)
    finally:
        await client.close()
    assert str(failed.value) == "no such path"  # the message of the Status it answered


async def test_a_certificate_the_ca_bundle_does_not_verify(webhook: ConversionWebhook,
                                                           reactor: Any) -> None:
    client = WebhookClient(webhook.url, new_ca("someone-else").cert_pem, reactor=reactor)
    try:
        with pytest.raises(WebhookCallError) as failed:
            await client.post(b"{}", 10)
    finally:
        await client.close()
    assert str(failed.value) == (
        f'Post "{webhook.url}?timeout=10s": tls: failed to verify certificate: x509: '
        "certificate signed by unknown authority")
    assert webhook.reviews == []


async def test_no_answer_in_time(reactor: Any) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does), never answers
    url = f"https://127.0.0.1:{silent.getsockname()[1]}/convert"
    client = WebhookClient(url, new_ca("ca").cert_pem, reactor=reactor)
    try:
        with pytest.raises(WebhookCallError) as failed:
            await client.post(b"{}", 0.5)
    finally:
        await client.close()
        silent.close()
    assert str(failed.value) == f'Post "{url}?timeout=500ms": context deadline exceeded'


async def test_nobody_listening(reactor: Any) -> None:
    port = free_port()
    client = WebhookClient(f"https://127.0.0.1:{port}/convert", b"", reactor=reactor)
    try:
        with pytest.raises(WebhookCallError) as failed:
            await client.post(b"{}", 10)
    finally:
        await client.close()
    assert str(failed.value) == (f'Post "https://127.0.0.1:{port}/convert?timeout=10s": dial '
                                 f"tcp 127.0.0.1:{port}: connect: connection refused")
