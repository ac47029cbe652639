"""The TLS connections of one port: counted when their handshake fails
(apiserver_tls_handshake_errors_total, as kube counts Go's "TLS handshake error from"), and
closed gracefully at shutdown: each one flushes what was written to it (a watch's final
chunk) and sends its TLS close_notify before the socket closes, where the reactor's own
shutdown would drop whatever was still buffered. Under TLS, each accepted TCP connection
sends what it is written at once (`adopt_port`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import connectionDone
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

log = logging.getLogger(__name__)


class _WriteThrough(tcp.Server):
    """An accepted TCP connection that sends what it is written at once when nothing is
    waiting to go out (the common case), as asyncio's and Go's transports do. Twisted's
    buffers every write and registers the socket for writability until a later turn sends
    it: two epoll_ctl calls and a turn of the loop per write, a quarter of a 1,000-watcher
    fan-out's CPU (benchmarks/README.md). What the socket does not take is buffered and
    sent as before."""

    def write(self, data: bytes) -> None:
        if (data and self.connected and not self._writeDisconnected and not self.disconnecting
                and not self._tempDataBuffer and self.offset == len(self.dataBuffer)):
            sent = self.writeSomeData(data)
            if isinstance(sent, int) and sent > 0:  # else an error, left to doWrite
                if sent == len(data):
                    return
                data = data[sent:]
        super().write(data)


class _Port(tcp.Port):
    transport = _WriteThrough


def adopt_port(reactor: Any, fileno: int, family: int, factory: Any) -> Any:
    """reactor.adoptStreamPort(fileno, family, factory) with write-through connections."""
    port = _Port._fromListeningDescriptor(reactor, fileno, family, factory)
    port.startListening()
    return port


class _TrackedTLS(TLSMemoryBIOProtocol):
    # Each write goes to OpenSSL at once: twisted's BufferingTLSTransport schedules a delayed
    # call per connection per turn to gather small writes, which with 1,000 watch
    # connections was a delayed call per event per watcher (a watch writes once a turn
    # anyway; kext's HTTP/2 batches its frames itself).

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        connection = self.getHandle()
        # the client's Finished message arrives last in a handshake, TLS 1.2 or 1.3
        if connection is not None and connection.get_peer_finished() is None:
            factory: Any = self.factory
            factory.handshake_failed()
        super().connectionLost(reason)


class ServingConnections(TLSMemoryBIOFactory):
    """TLS around the site, keeping the open connections (WrappingFactory.protocols) so
    that `close()` can end them; `on_handshake_error` is called for every connection that
    closed before its handshake completed."""

    protocol = _TrackedTLS

    def __init__(self, context_factory: Any, site: Any,
                 on_handshake_error: Callable[[], None]) -> None:
        super().__init__(context_factory, False, site)
        self._on_handshake_error = on_handshake_error
        self._all_closed: asyncio.Event | None = None

    def handshake_failed(self) -> None:
        self._on_handshake_error()

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)
        if not self.protocols and self._all_closed is not None:
            self._all_closed.set()

    @property
    def open_connections(self) -> int:
        return len(self.protocols)

    async def close(self, timeout: float) -> int:
        """Close every connection after what was written to it is sent; abort those still
        open after timeout seconds. Returns how many had to be aborted."""
        if not self.protocols:
            return 0
        self._all_closed = asyncio.Event()
        for connection in list(self.protocols):
            # As HTTPChannel.loseConnection: the channel stops being the transport's producer
            # (it would hold the close back). The TLS layer then sends what is buffered and
            # its close_notify; the socket closes once those are sent, without waiting for
            # the client's close_notify (an idle client never reads it).
            connection.unregisterProducer()
            connection.loseConnection()
            if connection.transport is not None:
                connection.transport.loseConnection()
        try:
            await asyncio.wait_for(self._all_closed.wait(), timeout)
        except TimeoutError:
            stuck = list(self.protocols)
            log.warning("aborting %d connections that did not close within %ss", len(stuck),
                        timeout)
            for connection in stuck:
                connection.abortConnection()
            return len(stuck)
        return 0
