"""DNS over TLS (RFC 7858): the TCP listener's connections, inside TLS.

asyncio completes the handshake (within ``handshake_timeout``) before the protocol
sees the connection, then a DoT connection is a TCP one: the same framing, pipelining,
cap on connections, idle timeout, engine, ACL (the peer's address) and query log. Only
its answers differ: padded (resolver/core/padding.py).
"""

from __future__ import annotations

import asyncio
import ssl
from functools import partial

from resolver.core.endpoint import Endpoint
from resolver.core.padding import pad
from resolver.core.tcpframe import frame
from resolver.edge.server import TcpConnection, TcpServerState
from resolver.edge.sockets import ListenError, bind_tcp

ALPN = ("dot",)  # RFC 7858 needs no ALPN; "dot" is the identifier of RFC 9461


class TlsConnection(TcpConnection):
    """One DoT client connection: many queries, pipelined, answered padded."""

    def framed(self, reply: bytes) -> bytes:
        return frame(pad(reply))

    def eof_received(self) -> bool:
        return False  # TLS cannot stay half open: the transport closes after the client's


class TlsListeners:
    """The DoT listening sockets of one process and what their connections share."""

    def __init__(self, state: TcpServerState, handshake_timeout: float) -> None:
        self.state = state
        self.handshake_timeout = handshake_timeout
        self.servers: list[asyncio.Server] = []

    async def start(self, endpoints: list[Endpoint], context: ssl.SSLContext) -> None:
        """Listen on ``endpoints`` (ListenError naming the one that cannot be bound; the
        others are closed then)."""
        loop = asyncio.get_running_loop()
        try:
            for endpoint in endpoints:
                try:
                    sock = bind_tcp(endpoint)
                except OSError as exc:
                    raise ListenError(endpoint, "tls", exc) from exc
                try:
                    server = await loop.create_server(
                        partial(TlsConnection, self.state),
                        sock=sock,
                        ssl=context,
                        ssl_handshake_timeout=self.handshake_timeout,
                    )
                except BaseException:
                    sock.close()
                    raise
                self.servers.append(server)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop accepting; open connections are ended by ``end_connections``."""
        for server in self.servers:
            server.close()

    def end_connections(self) -> None:
        for conn in list(self.state.connections):
            if conn.transport is not None:
                conn.transport.close()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.sockets[0].getsockname()[:2] for s in self.servers if s.sockets]
