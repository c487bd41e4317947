"""The encrypted listeners of one process: DNS over TLS and DNS over HTTPS, sharing the
operator's certificate, started, given a renewed certificate and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from resolver.core.endpoint import Endpoint
from resolver.core.engine import Engine
from resolver.edge import doh, tls
from resolver.edge.dispatch import Dispatcher
from resolver.edge.http import HttpServer
from resolver.edge.server import TcpServerState
from resolver.edge.sockets import ListenError
from resolver.edge.tlscert import Certificates


class EncryptedListeners:
    """DoT (TCP's connections inside TLS) and DoH (hypercorn) on the same engine."""

    def __init__(
        self,
        engine: Engine,
        dispatcher: Dispatcher,
        cert: Path,
        key: Path,
        idle_timeout: float,
        max_connections: int,
        answer_timeout: float,
    ) -> None:
        """Raises TlsError when the certificate or key cannot be used."""
        self.engine = engine
        self.dispatcher = dispatcher
        self.certificates = Certificates(cert, key)
        self.idle_timeout = idle_timeout
        self.answer_timeout = answer_timeout
        self.dot_state = TcpServerState(engine, dispatcher, idle_timeout, max_connections)
        self.dot = tls.TlsListeners(self.dot_state, handshake_timeout=idle_timeout)
        self.doh: HttpServer | None = None

    async def start(self, dot: Sequence[Endpoint], https: Sequence[Endpoint]) -> None:
        """Listen on the DoT and the DoH endpoints; ListenError when one cannot be bound."""
        if dot:
            await self.dot.start(list(dot), self.certificates.context(tls.ALPN))
        if https:
            limits = doh.doh_limits(self.idle_timeout, self.answer_timeout)
            app = doh.doh_app(self.engine, self.dispatcher, limits, self.answer_timeout)
            context = self.certificates.context(doh.ALPN)
            self.doh = HttpServer("doh", app, limits, tls=context)
            try:
                await self.doh.start(https)
            except OSError as exc:
                self.doh = None
                raise ListenError(", ".join(map(str, https)), "https", exc) from exc

    async def reload(self, cert: Path, key: Path) -> None:
        """New connections get the certificate in ``cert`` and ``key`` from now on;
        TlsError (and the old one kept) when they do not load."""
        contexts = await asyncio.to_thread(self.certificates.prepare, cert, key)
        self.certificates.install(cert, key, contexts)

    @property
    def connections(self) -> int:
        """DoT connections open now."""
        return len(self.dot_state.connections)

    def close(self) -> None:
        """Stop accepting; DoH responses under way get their grace, DoT connections stay
        until ``end_connections``."""
        self.dot.close()
        if self.doh is not None:
            self.doh.close()

    async def wait_closed(self) -> None:
        if self.doh is not None:
            await self.doh.wait_closed()

    def end_connections(self) -> None:
        self.dot.end_connections()
