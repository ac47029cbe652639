"""A small asyncio HTTPS watch client for tests that need many concurrent watchers (threads
with `requests` would not scale to 1,000): HTTP/1.1, client certificate, chunked decoding."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit


def tls_context(ca_file: str, cert: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.load_cert_chain(*cert)
    return context


class Watch:
    """One open watch stream; `events()` yields decoded events until the server ends it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 status: int, headers: dict[str, str]) -> None:
        self.reader = reader
        self.writer = writer
        self.status = status
        self.headers = headers

    @classmethod
    async def open(cls, url: str, context: ssl.SSLContext,
                   headers: dict[str, str] | None = None,
                   receive_buffer: int = 0) -> Watch:
        """Open a watch; receive_buffer > 0 shrinks the socket's receive buffer (a client that
        stops reading then pushes back on the server almost at once)."""
        parts = urlsplit(url)
        sock = None
        if receive_buffer:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.connect((parts.hostname or "127.0.0.1", parts.port or 443))
            sock.setblocking(False)
            # a small stream limit too: asyncio otherwise reads ahead into its own buffer
            reader, writer = await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname=parts.hostname, limit=receive_buffer
            )
        else:
            reader, writer = await asyncio.open_connection(
                parts.hostname, parts.port, ssl=context, limit=2**22
            )
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}",
                 *(f"{k}: {v}" for k, v in (headers or {}).items()), "", ""]
        writer.write("\r\n".join(lines).encode())
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        response_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            response_headers[name.strip().lower()] = value.strip()
        return cls(reader, writer, status, response_headers)

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self.headers.get("transfer-encoding") != "chunked":
            length = int(self.headers.get("content-length", "0"))
            yield await self.reader.readexactly(length)
            return
        while True:
            size_line = await self.reader.readline()
            if not size_line:
                return
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return
            data = await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            yield data

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        buffer = b""
        async for chunk in self._chunks():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)
        if buffer.strip():
            yield json.loads(buffer)

    async def body(self) -> bytes:
        return b"".join([c async for c in self._chunks()])

    def close(self) -> None:
        self.writer.close()
