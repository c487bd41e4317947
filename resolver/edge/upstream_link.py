"""The forwarder's side of a tls:// or https:// upstream: its tries by message ID, as a
UDP socket of the forwarder has them (edge/upstream.py), carried by a DoT or DoH
transport (edge/upstream_tls.py, edge/upstream_https.py).

The transport hands back replies, and the tries it could not carry (no connection,
certificate not accepted, connection lost twice, an HTTP error): each of those is a
failed try, and the forwarder sends the next at once. A reply that is malformed or
truncated fails its try too: over TLS no other reply will come for it, and there is no
bigger transport to ask again over.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from resolver.core import outbound, wire
from resolver.core.errors import FormError
from resolver.core.upstream_spec import SecureUpstream
from resolver.edge.upstream_https import HttpsChannel
from resolver.edge.upstream_tls import TlsChannel


class Asker(Protocol):
    """What a link needs of the forwarder (edge/upstream.py's Forwarder)."""

    query_timeout: float
    log: Any
    stats: Any

    def on_reply(self, flight: Any, reply: outbound.Reply, sock: SecureLink, qid: int) -> None: ...

    def try_failed(self, flight: Any, link: SecureLink, qid: int, reason: str) -> None: ...


class SecureLink:
    """One encrypted upstream's tries, and the transport that carries them."""

    __slots__ = ("forwarder", "pending", "transport", "upstream")
    retired: Literal[False] = False  # never replaced, unlike a UDP socket
    outbox = b""  # queries are never held here: the transport sends them

    def __init__(self, forwarder: Asker, upstream: Any, spec: SecureUpstream) -> None:
        self.forwarder = forwarder
        self.upstream = upstream  # the forwarder's Upstream
        self.pending: dict[int, tuple[Any, bytes]] = {}  # ID: (the Flight, b"": no 0x20)
        kind = TlsChannel if spec.scheme == "tls" else HttpsChannel
        wanted = self.pending.__contains__
        timeout = forwarder.query_timeout
        self.transport = kind(spec, self.received, self.failed, wanted, timeout, forwarder.log)

    def send(self, flight: Any) -> None:
        qid = outbound.random_id()
        while qid in self.pending:
            qid = outbound.random_id()
        flight.sent.append((self, qid))
        self.pending[qid] = (flight, b"")
        self.transport.send(qid, outbound.build_upstream_query(flight.question.query, qid))

    def received(self, data: bytes) -> None:
        qid = outbound.reply_qid(data)
        entry = self.pending.get(qid)
        if entry is None:
            self.forwarder.stats.unexpected += 1  # its question has ended
            return
        try:
            reply = outbound.parse_reply(data, qid, entry[0].question.query.question)
        except FormError:
            self.failed(qid, "a malformed reply")
            return
        if reply.flags & wire.TC:
            self.failed(qid, "a truncated reply")
            return
        self.forwarder.on_reply(entry[0], reply, self, qid)

    def failed(self, qid: int, reason: str) -> None:
        entry = self.pending.get(qid)
        if entry is not None:
            self.forwarder.try_failed(entry[0], self, qid, reason)
