"""DNS over HTTPS to an upstream (RFC 8484): each query a POST of application/dns-message,
one HTTP/2 stream, on one persistent connection (upstream_stream.py) shared by them all.

The h2 library speaks HTTP/2 (framing, header compression, flow control, settings);
this module only maps streams to queries. As many streams are open at once as the
server allows (its SETTINGS_MAX_CONCURRENT_STREAMS) and the forwarder's cap. Queries
carry message ID 0 (RFC 8484 section 4.1); a reply is matched by its stream and given
the forwarder's ID back. A status other than 200, another media type, or a stream the
server resets is a failed query; a GOAWAY ends the connection, and what it left
unanswered is sent once more on a new one. HTTP/2 is required (RFC 8484 section 5.2
names it the minimum recommended version): a server that does not choose it by ALPN
is a failed connection. Proxies are not used: queries go straight to the upstream.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from resolver.core.upstream_spec import SecureUpstream
from resolver.edge.upstream_stream import Fed, Session, StreamChannel

MEDIA_TYPE = b"application/dns-message"
MIN_WINDOW = 4096  # octets of HTTP/2 send window a new query needs (a padded query is less)


class Exchange:
    """One stream: the query it carries and the response as it arrives."""

    __slots__ = ("body", "media", "qid", "status")

    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.status = b""
        self.media = b""
        self.body = bytearray()


class DohSession:
    """The DoH protocol on one connection: an HTTP/2 client connection."""

    def __init__(self, spec: SecureUpstream) -> None:
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.ENABLE_PUSH: 0}
        )
        host = spec.name or (f"[{spec.host}]" if ":" in spec.host else spec.host)
        authority = host if spec.port == 443 else f"{host}:{spec.port}"
        self.headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", spec.path.encode()),
            (b"content-type", MEDIA_TYPE),
            (b"accept", MEDIA_TYPE),
        ]
        self.streams: dict[int, Exchange] = {}

    def start(self) -> bytes:
        self.h2.initiate_connection()
        return self.h2.data_to_send()

    def room(self) -> int:
        if self.h2.outbound_flow_control_window < MIN_WINDOW:
            return 0
        return self.h2.remote_settings.max_concurrent_streams - len(self.streams)

    def encode(self, qid: int, message: bytes) -> bytes:
        body = b"\0\0" + message[2:]  # ID 0: RFC 8484 section 4.1
        sid = self.h2.get_next_available_stream_id()
        length = (b"content-length", str(len(body)).encode())
        self.h2.send_headers(sid, [*self.headers, length])
        self.h2.send_data(sid, body, end_stream=True)
        self.streams[sid] = Exchange(qid)
        return self.h2.data_to_send()

    def feed(self, data: bytes) -> Fed:
        fed = Fed()
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            fed.closing = True  # what is unanswered goes once more, on a new connection
            return fed
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                exchange = self.streams.get(event.stream_id or 0)
                if exchange is not None:
                    for name, value in event.headers or ():
                        if name == b":status":
                            exchange.status = bytes(value)
                        elif name == b"content-type":
                            exchange.media = bytes(value).partition(b";")[0].strip().lower()
            elif isinstance(event, h2.events.DataReceived):
                exchange = self.streams.get(event.stream_id or 0)
                if exchange is not None and event.data:
                    exchange.body += event.data
                if event.stream_id:  # the window the server may send in again
                    self.h2.acknowledge_received_data(
                        event.flow_controlled_length or 0, event.stream_id
                    )
            elif isinstance(event, h2.events.StreamEnded):
                self._ended(self.streams.pop(event.stream_id or 0, None), fed)
            elif isinstance(event, h2.events.StreamReset):
                exchange = self.streams.pop(event.stream_id or 0, None)
                if exchange is not None:
                    fed.failures.append((exchange.qid, f"stream reset ({event.error_code!s})"))
            elif isinstance(event, h2.events.ConnectionTerminated):
                fed.closing = True
        fed.send = self.h2.data_to_send()
        return fed

    @staticmethod
    def _ended(exchange: Exchange | None, fed: Fed) -> None:
        if exchange is None:
            return
        if exchange.status != b"200" or exchange.media != MEDIA_TYPE:
            status = exchange.status.decode(errors="replace") or "none"
            media = exchange.media.decode(errors="replace") or "no media type"
            fed.failures.append((exchange.qid, f"HTTP status {status}, {media}"))
            return
        body = bytes(exchange.body)
        fed.replies.append((exchange.qid, exchange.qid.to_bytes(2, "big") + body[2:]))


class HttpsChannel(StreamChannel):
    """The DoH transport of one upstream."""

    ALPN = ("h2",)

    def session(self, alpn: str | None) -> Session:
        if alpn != "h2":
            raise ConnectionError("the server does not offer HTTP/2 (ALPN h2)")
        return DohSession(self.spec)
