"""kext's client for the webhooks it calls (conversion webhooks today): JSON POSTs over
kext.kube's pooled, verified HTTPS client, its failures worded as kube's users read them.

One `WebhookClient` per webhook configuration: it verifies the webhook's serving certificate
against that webhook's CA bundle (or the system's trust store when it has none) and keeps
persistent connections (kext.kube.client.KubeClient: Twisted's Agent and a connection pool),
so a webhook called on every read costs one TLS handshake per connection, not per call. A
call is never retried (kube's webhook client does not retry a POST) and has a timeout.
Failures raise `WebhookCallError` whose text is the part kube prints after the webhook's
name: client-go's words for an error answer, Go's net/http words (`Post "<url>": <why>`) for
no answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kext.kube.client import KubeClient
from kext.kube.config import ClusterAccess
from kext.kube.errors import KubeStatusError, KubeTimeout, KubeUnavailable

POOL_SIZE = 10  # idle connections kept per webhook host


class WebhookCallError(Exception):
    """A webhook call that failed: the message is what kube would print."""


class WebhookClient:
    """POSTs JSON to one HTTPS webhook URL, verified against ca_pem (PEM certificates; empty:
    the system's trust store)."""

    def __init__(self, url: str, ca_pem: bytes = b"", *, reactor: Any = None,
                 pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._client = KubeClient(ClusterAccess(server=url, ca_pem=ca_pem, source=url),
                                  reactor=reactor, retries=0, pool_size=pool_size)

    def __repr__(self) -> str:
        return f"WebhookClient({self.url!r})"

    async def post(self, body: bytes, timeout: float) -> bytes:
        """POST body (JSON) with `?timeout=<timeout>s` (as kube's client adds it); the 2xx
        answer's body, or WebhookCallError."""
        duration = f"{int(timeout)}s" if timeout >= 1 else f"{int(timeout * 1000)}ms"  # Go's
        url = f"{self.url}?timeout={duration}"
        try:
            response = await self._client.request("POST", "", params={"timeout": duration},
                                                  body=body, timeout=timeout, idempotent=False)
        except KubeTimeout:
            raise WebhookCallError(f'Post "{url}": context deadline exceeded') from None
        except KubeStatusError as exc:
            raise WebhookCallError(exc.message) from None
        except KubeUnavailable as exc:
            raise WebhookCallError(f'Post "{url}": {_go_words(exc, url)}') from None
        if not response.body:
            raise WebhookCallError(
                f"0-length response with status code: {response.code} and content type: "
                f"{response.header('content-type')}")
        return response.body

    async def close(self) -> None:
        """Close the pooled connections."""
        await self._client.close()


def _go_words(error: KubeUnavailable, url: str) -> str:
    """Why there was no answer, as Go's net/http says it where kube users know the text."""
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or 443}"
    if error.tls:
        if "certificate verify failed" in error.why:
            return ("tls: failed to verify certificate: x509: certificate signed by unknown "
                    "authority")
        return f"tls: {error.why}"
    return {
        "connection refused": f"dial tcp {address}: connect: connection refused",
        "host name not found": f"dial tcp: lookup {parts.hostname}: no such host",
        "connect timed out": f"dial tcp {address}: i/o timeout",
        "connection closed by the server": "EOF",
    }.get(error.why, error.why)
