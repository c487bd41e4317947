"""Listening sockets, bound so that no other program shares the address.

A single process binds its listeners without SO_REUSEPORT: the bind fails if anyone
holds the address, whatever options they used. Several workers share one port by
SO_REUSEPORT (the kernel spreads clients over their sockets), but only after a bind
without it proved that nobody else holds the address, and only among sockets the
supervisor bound itself and passed down to its workers (``LISTEN_FDS``).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from resolver.core.endpoint import Endpoint

LISTEN_FDS = "SINKHOLE_LISTEN_FDS"  # the passed sockets' fd numbers: "udp,tcp udp,tcp ..."
BACKLOG = 1024

REASONS = {
    errno.EADDRINUSE: "address already in use (another server holds it)",
    errno.EADDRNOTAVAIL: "address not available on this host",
    errno.EACCES: "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)",
}


class ListenError(Exception):
    """A listening address that could not be bound, with the address and transport named."""

    def __init__(self, endpoint: Endpoint | str, transport: str, cause: OSError | str) -> None:
        self.address = str(endpoint)
        self.transport = transport
        if isinstance(cause, OSError):
            cause = REASONS.get(cause.errno or 0) or cause.strerror or str(cause)
        self.reason = cause
        super().__init__(f"{self.address} ({transport}): {cause}")

    def fields(self) -> dict[str, str]:
        """For the ``listen_failed`` log line."""
        return {"address": self.address, "transport": self.transport, "error": self.reason}


@dataclass(frozen=True, slots=True)
class Listener:
    """The UDP and the TCP socket serving one address."""

    endpoint: Endpoint
    udp: socket.socket
    tcp: socket.socket

    def fds(self) -> str:
        return f"{self.udp.fileno()},{self.tcp.fileno()}"

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def bind_udp(endpoint: Endpoint, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for size in (4 << 20, 1 << 20):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                break
            except OSError:
                continue
        sock.bind((endpoint.host, endpoint.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_tcp(endpoint: Endpoint, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """SO_REUSEADDR lets a restart bind over connections of the last run still in TIME_WAIT;
    it never lets two listening sockets share an address."""
    family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((endpoint.host, endpoint.port))
        if listen:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_exclusive(endpoints: Sequence[Endpoint]) -> list[Listener]:
    """One process alone: every listener bound without SO_REUSEPORT."""
    return _bind_sets(endpoints, 1, reuse_port=False, check_free=False)[0]


def bind_for_workers(
    endpoints: Sequence[Endpoint], copies: int, check_free: bool = True
) -> list[list[Listener]]:
    """``copies`` sets of SO_REUSEPORT listeners, one set for each worker.

    With ``check_free``, each address is first bound without SO_REUSEPORT and let go:
    that fails if any other socket holds it, even one with SO_REUSEPORT of our own user.
    """
    return _bind_sets(endpoints, copies, reuse_port=True, check_free=check_free)


def _bind_sets(
    endpoints: Sequence[Endpoint], copies: int, reuse_port: bool, check_free: bool
) -> list[list[Listener]]:
    udp: list[list[socket.socket]] = []
    tcp: list[list[socket.socket]] = []
    try:
        for endpoint in endpoints:
            # Check and bind one transport right after the other: the gap is microseconds.
            for transport, bound in (("udp", udp), ("tcp", tcp)):
                try:
                    if check_free:
                        probe = _bind(endpoint, transport, reuse_port=False, listen=False)
                        probe.close()
                    bound.append([_bind(endpoint, transport, reuse_port) for _ in range(copies)])
                except OSError as exc:
                    raise ListenError(endpoint, transport, exc) from exc
    except ListenError:
        close_all(s for group in udp + tcp for s in group)
        raise
    return [
        [Listener(e, u[i], t[i]) for e, u, t in zip(endpoints, udp, tcp, strict=True)]
        for i in range(copies)
    ]


def _bind(
    endpoint: Endpoint, transport: str, reuse_port: bool, listen: bool = True
) -> socket.socket:
    if transport == "udp":
        return bind_udp(endpoint, reuse_port)
    return bind_tcp(endpoint, reuse_port, listen)


def close_all(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def environment(listeners: Sequence[Listener]) -> str:
    """The value of ``LISTEN_FDS`` for a worker given ``listeners`` (with pass_fds)."""
    return " ".join(listener.fds() for listener in listeners)


def inherited(value: str) -> list[Listener]:
    """The listeners a supervisor passed down, from the value of ``LISTEN_FDS``."""
    listeners = []
    for pair in value.split():
        udp_fd, _, tcp_fd = pair.partition(",")
        udp = _adopt(int(udp_fd), socket.SOCK_DGRAM)
        tcp = _adopt(int(tcp_fd), socket.SOCK_STREAM)
        host, port = udp.getsockname()[:2]
        listeners.append(Listener(Endpoint(host, port), udp, tcp))
    return listeners


def _adopt(fd: int, kind: socket.SocketKind) -> socket.socket:
    transport = "udp" if kind == socket.SOCK_DGRAM else "tcp"
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ListenError(f"fd {fd}", transport, exc) from exc
    if sock.type != kind:
        sock.close()
        raise ListenError(f"fd {fd}", transport, "the passed socket is of another kind")
    sock.setblocking(False)
    return sock


def open_listeners(endpoints: Sequence[Endpoint], passed_down: bool) -> list[Listener]:
    """This process's listeners: those its supervisor bound (``passed_down``), else bound
    here, alone on each address. Raises ListenError naming the address that failed."""
    if passed_down:
        value = os.environ.get(LISTEN_FDS)
        if value is None:
            raise ListenError(", ".join(map(str, endpoints)), "udp", f"{LISTEN_FDS} is not set")
        return inherited(value)
    return bind_exclusive(endpoints)
