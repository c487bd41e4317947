"""DNS over TLS to an upstream (RFC 7858): DNS messages framed as over TCP, on one
persistent connection (upstream_stream.py), replies matched by message ID (the
forwarder gives every query out on the connection its own).

No 0x20 over TLS: an off-path attacker cannot inject into the connection, and some
DoT servers do not keep the letter case anyway.
"""

from __future__ import annotations

from resolver.core.outbound import reply_qid
from resolver.core.tcpframe import Framer, frame
from resolver.edge.upstream_stream import Fed, Session, StreamChannel


class DotSession:
    """The DoT protocol on one connection: two-octet lengths before messages."""

    def __init__(self) -> None:
        self.framer = Framer()

    def start(self) -> bytes:
        return b""

    def room(self) -> int:
        return 1 << 16  # no limit of its own: the channel's cap applies

    def encode(self, qid: int, message: bytes) -> bytes:
        return frame(message)

    def feed(self, data: bytes) -> Fed:
        return Fed(replies=[(reply_qid(m), m) for m in self.framer.feed(data)])


class TlsChannel(StreamChannel):
    """The DoT transport of one upstream."""

    ALPN = ("dot",)  # RFC 7858 needs no ALPN; "dot" is the identifier of RFC 9461

    def session(self, alpn: str | None) -> Session:
        return DotSession()
