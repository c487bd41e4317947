"""The protocols spoken on an encrypted upstream connection, bytes in and out: DoT
framing, and DoH over HTTP/2 against an h2 server connection in memory."""

from __future__ import annotations

import dns.edns
import dns.message
import h2.config
import h2.connection
import h2.events
import h2.settings

from resolver.core.tcpframe import frame
from resolver.core.upstream_spec import parse_secure
from resolver.edge.upstream_https import DohSession
from resolver.edge.upstream_secure import Channel
from resolver.edge.upstream_tls import DotSession

QUERY = bytes.fromhex("1234 0100 0001 0000 0000 0000 0161 0474 6573 7400 0001 0001")


def reply_to(query: bytes, qid: int | None = None) -> bytes:
    """A minimal answer: the query with QR set (and ``qid`` when given)."""
    head = query[:2] if qid is None else qid.to_bytes(2, "big")
    return head + bytes([query[2] | 0x80]) + query[3:]


def test_dot_frames_queries_and_matches_replies_by_id_in_any_order() -> None:
    session = DotSession()
    assert session.start() == b"" and session.room() > 100
    assert session.encode(0x1234, QUERY) == frame(QUERY)
    first, second = reply_to(QUERY, 7), reply_to(QUERY, 9)
    data = frame(second) + frame(first)
    fed = session.feed(data[:5])
    assert fed.replies == []
    fed = session.feed(data[5:])
    assert fed.replies == [(9, second), (7, first)]


class Server:
    """The server's end of an HTTP/2 connection, in memory."""

    def __init__(self, max_streams: int = 100) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams},
        )
        self.h2.initiate_connection()
        self.requests: dict[int, tuple[dict[bytes, bytes], bytes]] = {}

    def take(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                assert event.stream_id is not None
                headers = {bytes(k): bytes(v) for k, v in event.headers or ()}
                self.requests[event.stream_id] = (headers, b"")
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None and event.data is not None
                headers, body = self.requests[event.stream_id]
                self.requests[event.stream_id] = (headers, body + event.data)

    def answer(self, sid: int, body: bytes, status: bytes = b"200") -> None:
        media = b"application/dns-message"
        self.h2.send_headers(sid, [(b":status", status), (b"content-type", media)])
        self.h2.send_data(sid, body, end_stream=True)

    def out(self) -> bytes:
        return self.h2.data_to_send()


def connected(server: Server, spec: str = "https://192.0.2.53:8443/q#dns.example") -> DohSession:
    session = DohSession(parse_secure(spec))
    server.take(session.start())
    session.feed(server.out())  # the server's settings
    return session


def test_doh_posts_with_id_zero_and_gives_the_reply_the_query_id() -> None:
    server = Server()
    session = connected(server)
    server.take(session.encode(0x1234, QUERY))
    [(sid, (headers, body))] = server.requests.items()
    assert headers[b":method"] == b"POST" and headers[b":path"] == b"/q"
    assert headers[b":authority"] == b"dns.example:8443"
    assert headers[b"content-type"] == b"application/dns-message"
    assert body == b"\0\0" + QUERY[2:]
    server.answer(sid, reply_to(body))
    fed = session.feed(server.out())
    assert fed.replies == [(0x1234, reply_to(QUERY))]
    assert fed.failures == [] and not fed.closing
    assert session.streams == {}


def test_doh_streams_answered_out_of_order_and_errors_fail_their_query() -> None:
    server = Server()
    session = connected(server)
    for qid in (1, 2, 3):
        server.take(session.encode(qid, QUERY))
    sids = sorted(server.requests)
    server.answer(sids[2], reply_to(QUERY, 0))
    server.answer(sids[0], b"not found", status=b"404")
    server.h2.reset_stream(sids[1])
    fed = session.feed(server.out())
    assert [qid for qid, _ in fed.replies] == [3]
    failures = dict(fed.failures)
    assert sorted(failures) == [1, 2]
    assert failures[1] == "HTTP status 404, application/dns-message"
    assert failures[2].startswith("stream reset")


def test_doh_room_follows_the_server_stream_limit_and_goaway_closes() -> None:
    server = Server(max_streams=2)
    session = connected(server)
    assert session.room() == 2
    server.take(session.encode(1, QUERY))
    server.take(session.encode(2, QUERY))
    assert session.room() == 0
    server.h2.close_connection()
    assert session.feed(server.out()).closing


def test_doh_authority_without_a_name_is_the_address() -> None:
    server = Server()
    session = connected(server, "https://[2001:db8::1]/dns-query")
    server.take(session.encode(5, QUERY))
    [(headers, _)] = server.requests.values()
    assert headers[b":authority"] == b"[2001:db8::1]"


def test_queries_are_padded_to_blocks_of_128_octets() -> None:
    for name in ("a.test", "a-much-longer-name-than-the-first.example.test"):
        query = dns.message.make_query(name, "A", use_edns=0).to_wire()
        padded = Channel.padded(query)
        assert len(padded) % 128 == 0 and len(padded) > len(query)
        [option] = dns.message.from_wire(padded).options
        assert option.otype == dns.edns.OptionType.PADDING
