"""DNS over HTTPS (RFC 8484): an ASGI app for hypercorn (resolver/edge/http.py).

``GET /dns-query?dns=<base64url>`` and ``POST /dns-query`` with an
``application/dns-message`` body, over HTTP/1.1 or HTTP/2 inside TLS. A query goes
through ``Engine.handle`` as one over TCP would (65,535 octets at most, the ACL by the
client's address, the query log); one that must wait goes to the Dispatcher with a sink
that completes this request's future. Answers are padded (resolver/core/padding.py) and
may be kept by HTTP caches for their smallest TTL (``cache-control: max-age``).

HTTP statuses: 200 with the DNS answer (whatever its rcode), 400 for a request that
carries no DNS query, 403 when the policy drops the query (DNS has no answer for it),
404 for another path, 405 for another method, 413 for a body over 65,535 octets, 415
for a POST of another content type, 503 when ``max_requests`` are being answered
already, 504 when no answer came in time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import struct
from time import monotonic
from urllib.parse import parse_qs

import structlog
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from resolver.core import wire
from resolver.core.ddr import DOH_PATH
from resolver.core.engine import Engine
from resolver.core.errors import FormError
from resolver.core.flight import Waiter
from resolver.core.padding import pad
from resolver.edge.dispatch import Dispatcher
from resolver.edge.http import Limits, lifespan

CONTENT_TYPE = b"application/dns-message"
MAX_MESSAGE = 65535
ALPN = ("h2", "http/1.1")
TEXT = b"text/plain; charset=utf-8"
ALLOW = b"GET, POST"

# Requests answered at once (most wait for an upstream); one more gets 503.
MAX_REQUESTS = 1024
# HTTP/2 streams one connection may have open at once.
MAX_STREAMS = 100
# Requests one connection may carry: no practical limit. A DoH client sends all its
# queries over one connection, and closing it every 1,000 requests (hypercorn's default)
# costs it a handshake and the queries in flight (dnsperf loses them all).
REQUESTS_PER_CONNECTION = 1 << 62


def doh_limits(idle_timeout: float, answer_timeout: float) -> Limits:
    """hypercorn's limits for DoH: a connection without a request for ``idle_timeout``
    seconds is closed; one whose client sends nothing while it waits for an answer (up
    to ``answer_timeout``) is not."""
    return Limits(
        max_requests=MAX_REQUESTS,
        header_timeout=idle_timeout,
        read_timeout=idle_timeout + answer_timeout,
        max_streams=MAX_STREAMS,
        requests_per_connection=REQUESTS_PER_CONNECTION,
        backlog=1024,
    )


class _Answer:
    """Where a waiting query's reply goes: this request's future."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[bytes]) -> None:
        self.future = future

    def send(self, waiter: Waiter, reply: bytes) -> None:
        if not self.future.done():
            self.future.set_result(reply)


def query_from_get(query_string: bytes) -> bytes | None:
    """The DNS message of a GET's ``dns`` parameter (base64url, padding optional)."""
    values = parse_qs(query_string.decode("latin-1")).get("dns")
    if not values:
        return None
    text = values[0]
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def max_age(reply: bytes) -> int:
    """The smallest TTL of the answer and authority records (0 when there are none)."""
    try:
        ancount, nscount = struct.unpack_from("!HH", reply, 6)
        pos = wire.skip_name(reply, 12) + 4
        ttls = []
        for _ in range(ancount + nscount):
            _, fixed, pos = wire.skip_rr(reply, pos)
            ttls.append(struct.unpack_from("!I", reply, fixed + 4)[0])
    except (FormError, struct.error):
        return 0
    return min(ttls, default=0)


async def _body(receive: ASGIReceiveCallable) -> bytes | None:
    """The request body; None when it grows past MAX_MESSAGE or the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_MESSAGE:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(
    send: ASGISendCallable,
    status: int,
    body: bytes,
    content_type: bytes = TEXT,
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def doh_app(
    engine: Engine, dispatcher: Dispatcher, limits: Limits, answer_timeout: float
) -> ASGIFramework:
    """The DoH endpoint at DOH_PATH; a query waits ``answer_timeout`` seconds at most."""
    busy = 0
    log = structlog.get_logger("sinkhole")

    async def resolve(message: bytes, client: str) -> bytes | None:
        result = engine.handle(message, client, int(monotonic()), True)
        if result is None or isinstance(result, bytes):
            return result
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        dispatcher.wait(result, _Answer(future), None, client, True)
        return await asyncio.wait_for(future, answer_timeout)

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        nonlocal busy
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # a WebSocket upgrade: refused when the app does not accept it
        if scope["path"] != DOH_PATH:
            await _send(send, 404, f"not found; the DoH path is {DOH_PATH}\n".encode())
            return
        method = scope["method"]
        if method not in ("GET", "POST"):
            await _send(send, 405, b"only GET and POST\n", extra=((b"allow", ALLOW),))
            return
        if busy >= limits.max_requests:
            await _send(send, 503, b"busy, try again\n", extra=((b"retry-after", b"1"),))
            return
        if method == "GET":
            message = query_from_get(scope["query_string"])
            if message is None:
                await _send(send, 400, b"expected ?dns= with a base64url DNS query\n")
                return
        else:
            kind = dict(scope["headers"]).get(b"content-type", b"")
            if kind.split(b";")[0].strip().lower() != CONTENT_TYPE:
                await _send(send, 415, b"the body must be application/dns-message\n")
                return
            body = await _body(receive)
            if body is None:
                await _send(send, 413, b"a DNS message is at most 65535 octets\n")
                return
            message = body
        peer = scope.get("client")
        client = peer[0] if peer else ""
        busy += 1
        try:
            reply = await resolve(message, client)
        except TimeoutError:
            await _send(send, 504, b"no answer in time\n")
            return
        finally:
            busy -= 1
        if reply is None:
            if len(message) < 12 or message[2] & 0x80:
                await _send(send, 400, b"not a DNS query\n")
            else:
                await _send(send, 403, b"no answer: the query is dropped\n")
            return
        extra = ((b"cache-control", f"max-age={max_age(reply)}".encode()),)
        try:
            async with asyncio.timeout(limits.send_timeout):
                await _send(send, 200, pad(reply), CONTENT_TYPE, extra)
        except TimeoutError:
            log.warning("http_client_too_slow", path=DOH_PATH, timeout=limits.send_timeout)

    return app
