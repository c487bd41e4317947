"""The DNS listeners of one serving process, wired to its engine: UDP (in batches where the
platform has them) and TCP on every listen address, DNS over TLS and HTTPS with the
operator's certificate (renewed on reload), and their designation (RFC 9462)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from resolver.core.ddr import Designated, designations
from resolver.core.endpoint import Endpoint
from resolver.core.engine import Engine
from resolver.core.ratelimit import RateLimiter
from resolver.edge.batchudp import BatchStats, BatchUdpListener
from resolver.edge.dispatch import Dispatcher
from resolver.edge.encrypted import EncryptedListeners
from resolver.edge.faults import Faults
from resolver.edge.mmsg import batching_available
from resolver.edge.server import TcpConnection, TcpServerState, UdpListener
from resolver.edge.sockets import open_listeners
from resolver.edge.tlscert import TlsError, certificate_facts
from resolver.sources.config import Config


class Listeners:
    """What one process listens on, opened, given a renewed certificate and closed."""

    def __init__(
        self,
        engine: Engine,
        dispatcher: Dispatcher,
        tcp_state: TcpServerState,
        faults: Faults,
        limiter: RateLimiter | None,
        log: Any,
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.tcp_state = tcp_state
        self.faults = faults
        self.limiter = limiter  # response rate limiting of UDP answers
        self.log = log
        self.udp: list[asyncio.BaseTransport | BatchUdpListener] = []
        self.tcp: list[asyncio.Server] = []
        self.encrypted: EncryptedListeners | None = None  # DoT and DoH (the first worker)
        self.encrypted_endpoints: tuple[tuple[Endpoint, ...], tuple[Endpoint, ...]] | None = None

    async def open(self, listen: Sequence[Endpoint], udp_batch: bool, passed_down: bool) -> None:
        """UDP and TCP on every address of ``listen``: bound here, or the sockets a
        supervisor bound and ``passed_down``."""
        loop = asyncio.get_running_loop()
        engine, dispatcher, limiter = self.engine, self.dispatcher, self.limiter
        for listener in open_listeners(listen, passed_down=passed_down):
            udp_sock = listener.udp
            if udp_batch and batching_available():
                self.udp.append(
                    BatchUdpListener(
                        engine, dispatcher, udp_sock, loop, faults=self.faults, limiter=limiter
                    )
                )
            else:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: UdpListener(engine, dispatcher, limiter), sock=udp_sock
                )
                self.udp.append(transport)
            tcp_sock = listener.tcp
            self.tcp.append(
                await loop.create_server(partial(TcpConnection, self.tcp_state), sock=tcp_sock)
            )

    def batch_stats(self) -> list[BatchStats]:
        """The counters of the listeners that move UDP in batches."""
        return [u.stats for u in self.udp if isinstance(u, BatchUdpListener)]

    # --- DNS over TLS and HTTPS, and their discovery (RFC 9462) ----------------------------

    async def start_encrypted(self, config: Config) -> None:
        assert config.tls
        if not (config.listen_tls or config.listen_https):
            return
        self.encrypted = EncryptedListeners(
            self.engine,
            self.dispatcher,
            config.tls.cert,
            config.tls.key,
            config.tcp_idle_timeout,
            config.tcp_max_connections,
            config.query_timeout + 1.0,
        )
        await self.encrypted.start(config.listen_tls, config.listen_https)
        self.log.info(
            "tls_certificate", cert=str(config.tls.cert), **certificate_facts(config.tls.cert)
        )

    async def reload_tls(self, config: Config) -> None:
        """A renewed certificate: new connections get it, and DDR names its name; one that
        does not load is logged and the one in use kept, with the designation."""
        if self.encrypted is not None and config.tls is not None:
            try:
                await self.encrypted.reload(config.tls.cert, config.tls.key)
            except TlsError as exc:
                self.log.error("tls_reload_failed", kept="previous certificate", error=str(exc))
                return
            self.log.info(
                "tls_reloaded", cert=str(config.tls.cert), **certificate_facts(config.tls.cert)
            )
        self.designate(config)

    def designate(self, config: Config) -> None:
        """The answer to _dns.resolver.arpa SVCB: the encrypted endpoints this server
        started with, under the name of its certificate (NODATA without any)."""
        if self.encrypted_endpoints is None:  # the first call: the listeners about to start
            self.encrypted_endpoints = (config.listen_tls, config.listen_https)
        dot, https = self.encrypted_endpoints
        if config.tls is None or not (dot or https):
            self.engine.designated = Designated()
            return
        name = config.tls.name or next(
            iter(certificate_facts(config.tls.cert).get("names", [])), ""
        )
        self.engine.designated = Designated(designations(name, dot, https))

    # --- shutdown --------------------------------------------------------------

    def close(self) -> None:
        """Stop listening; connections already open stay until end_connections."""
        for transport in self.udp:
            transport.close()
        for server in self.tcp:
            server.close()
        if self.encrypted is not None:
            self.encrypted.close()

    async def wait_closed(self) -> None:
        if self.encrypted is not None:
            await self.encrypted.wait_closed()

    def end_connections(self) -> None:
        """Close the client connections still open, plain TCP and encrypted."""
        for conn in list(self.tcp_state.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self.encrypted is not None:
            self.encrypted.end_connections()
