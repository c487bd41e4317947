"""HTTP endpoints on the running event loop: hypercorn serving small ASGI apps.

hypercorn speaks HTTP/1.1 (h11) and HTTP/2 (h2, cleartext or over TLS) on asyncio and
uvloop; this module adds what every endpoint of the server shares:

- ``route_app``: an ASGI app from a table of read-only routes (path -> a function giving
  status, content type and body). GET and HEAD only (405 with ``Allow`` otherwise), 404
  for other paths, fixed bodies that never repeat the request, a body given as chunks
  is streamed (the event loop serves queries between chunks).
- ``request_app``: the same guards for one function that sees the request (``Request``:
  method, path, headers, client address) and gives a ``Response`` with its own headers.
- ``HttpServer``: binds the endpoints (so an address in use fails at start, as the DNS
  listeners do) and runs ``hypercorn.asyncio.serve`` until ``close``; with ``Tls``, more
  endpoints speak HTTPS with the given ``ssl.SSLContext``.
- ``Limits``: hypercorn closes a connection whose request head is not complete within
  ``header_timeout`` (its keep-alive timer runs until a request arrives) or grows past
  ``max_header_bytes`` (431; a head that arrived whole is measured in the ASGI layer).
  hypercorn has no cap on connections, so the cap is on requests being answered at
  once (``max_requests``, counted in the ASGI layer): one more gets 503 at once, never
  a queue. Connections that never finish a request live ``header_timeout`` at most; a
  client that stops reading a response is given up after ``send_timeout``, and its
  connection ended by the kernel (TCP_USER_TIMEOUT) rather than held open.
- hypercorn's own logging goes to structlog as JSON lines (errors only; no access log).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.logging import Logger
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ASGISendEvent,
    HTTPScope,
    Scope,
)

from resolver.core.endpoint import Endpoint
from resolver.edge.sockets import bind_tcp

# What a route gives: status, content type, and the body whole or as chunks to stream.
Reply = tuple[int, str, bytes | Iterable[bytes]]
Route = Callable[[], Reply]


@dataclass(frozen=True, slots=True)
class Request:
    """What ``request_app`` hands its function: header names lower case, values as sent."""

    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    client: str  # the peer's address; "" when unknown

    def header(self, name: bytes) -> str:
        """The first value of header ``name`` (lower case) as text, or ""."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return ""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()  # besides content type and length


Handler = Callable[[Request], Response]


@dataclass(frozen=True, slots=True)
class Tls:
    """Endpoints that speak HTTPS, and the TLS context they use."""

    endpoints: Sequence[Endpoint]
    context: ssl.SSLContext


METHODS = ("GET", "HEAD")
ALLOW = ", ".join(METHODS).encode()
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Limits:
    max_requests: int = 16  # requests answered at once; one more gets 503
    max_header_bytes: int = 8192  # request line and headers (HTTP/1.1), header list (HTTP/2)
    header_timeout: float = 5.0  # for a request head to arrive, and between keep-alive requests
    read_timeout: float | None = 60.0  # for any read; None: none (a long response needs it)
    send_timeout: float = 10.0  # for a client to take each part of a response
    max_streams: int = 8  # HTTP/2 streams at once on one connection
    # Requests one connection may carry before it is closed (hypercorn's default).
    requests_per_connection: int = 1000
    backlog: int = 128
    shutdown_grace: float = 1.0  # for responses under way when the server closes


def route_app(routes: Mapping[str, Route], limits: Limits) -> ASGIFramework:
    """An ASGI app answering GET and HEAD on ``routes``, within ``limits``."""
    not_found = f"not found; paths: {' '.join(sorted(routes))}\n".encode()

    def find(scope: HTTPScope) -> Serve | None:
        route = routes.get(scope["path"])
        if route is None:
            return None

        async def answer(send: ASGISendCallable) -> None:
            await _answer(send, route(), scope["method"] == "HEAD", limits.send_timeout)

        return answer

    return _guarded(limits, find, not_found)


def request_app(handler: Handler, limits: Limits) -> ASGIFramework:
    """An ASGI app answering GET and HEAD on any path with ``handler``, within ``limits``.
    ``handler`` runs on the event loop: it must be quick and never block."""

    def find(scope: HTTPScope) -> Serve:
        async def answer(send: ASGISendCallable) -> None:
            client = scope.get("client")
            request = Request(
                scope["method"],
                scope["path"],
                tuple((bytes(k).lower(), bytes(v)) for k, v in scope["headers"]),
                str(client[0]) if client else "",
            )
            response = handler(request)
            extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
            async with asyncio.timeout(limits.send_timeout):
                await _reply(
                    send,
                    response.status,
                    response.content_type,
                    b"" if scope["method"] == "HEAD" else response.body,
                    extra,
                    len(response.body),
                )

        return answer

    return _guarded(limits, find)


# Sends the answer to one request (``find`` made it for that request's scope).
Serve = Callable[[ASGISendCallable], Awaitable[None]]


def _guarded(
    limits: Limits, find: Callable[[HTTPScope], Serve | None], not_found: bytes = b""
) -> ASGIFramework:
    """The checks every endpoint makes before it answers: a head within its size, a path
    ``find`` knows (else 404), GET or HEAD (else 405), and at most ``limits.max_requests``
    answered at once (else 503); a client too slow to take the answer is logged."""
    busy = 0

    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        nonlocal busy
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # a WebSocket upgrade: hypercorn refuses it when the app does not accept
        if _too_large(scope, limits):
            await _reply(send, 431, TEXT, b"request head too large\n")
            return
        serve = find(scope)
        if serve is None:
            await _reply(send, 404, TEXT, not_found)
            return
        if scope["method"] not in METHODS:
            await _reply(send, 405, TEXT, b"only GET and HEAD\n", [(b"allow", ALLOW)])
            return
        if busy >= limits.max_requests:
            await _reply(send, 503, TEXT, b"busy, try again\n", [(b"retry-after", b"1")])
            return
        busy += 1
        try:
            await serve(send)
        except TimeoutError:
            structlog.get_logger("sinkhole").warning(
                "http_client_too_slow", path=scope["path"], timeout=limits.send_timeout
            )
        finally:
            busy -= 1

    return app


def _too_large(scope: HTTPScope, limits: Limits) -> bool:
    """h11 limits a head still arriving; one that came in a single read is measured here."""
    size = len(scope["path"]) + len(scope["query_string"])
    return size + sum(len(k) + len(v) for k, v in scope["headers"]) > limits.max_header_bytes


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


lifespan = _lifespan  # for the other apps served here (DNS over HTTPS)


async def _answer(send: ASGISendCallable, reply: Reply, head: bool, timeout: float) -> None:
    """``reply`` sent; each part must be taken by the client within ``timeout``."""
    status, content_type, body = reply
    if isinstance(body, bytes):
        async with asyncio.timeout(timeout):
            await _reply(send, status, content_type, b"" if head else body, length=len(body))
        return
    async with asyncio.timeout(timeout):
        await send(_start(status, content_type, []))
    if not head:
        for chunk in body:
            async with asyncio.timeout(timeout):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)  # queries go first
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _start(status: int, content_type: str, extra: list[tuple[bytes, bytes]]) -> ASGISendEvent:
    headers = [
        (b"content-type", content_type.encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        *extra,
    ]
    return {"type": "http.response.start", "status": status, "headers": headers, "trailers": False}


async def _reply(
    send: ASGISendCallable,
    status: int,
    content_type: str,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    length: int | None = None,
) -> None:
    """A whole response; ``length`` when ``body`` is empty for HEAD."""
    size = len(body) if length is None else length
    await send(
        _start(status, content_type, [(b"content-length", str(size).encode()), *(extra or [])])
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _logger_class(name: str) -> type[Logger]:
    """hypercorn's logger, writing through structlog: errors only, no access lines."""
    log = structlog.get_logger("sinkhole").bind(http=name)

    class HttpLog(Logger):
        def __init__(self, config: Config) -> None:
            super().__init__(config)  # no access or error logger: both are None in the config

        async def access(self, request: Any, response: Any, request_time: float) -> None:
            pass

        async def critical(self, message: str, *args: Any, **kwargs: Any) -> None:
            log.error("http_error", detail=_text(message, args))

        async def error(self, message: str, *args: Any, **kwargs: Any) -> None:
            log.error("http_error", detail=_text(message, args))

        async def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
            log.warning("http_warning", detail=_text(message, args))

        async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
            log.debug("http_info", detail=_text(message, args))

        async def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
            log.debug("http_info", detail=_text(message, args))

        async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
            log.error("http_error", detail=_text(message, args), exc_info=True)

        async def log(self, level: int, message: str, *args: Any, **kwargs: Any) -> None:
            log.log(level, "http_log", detail=_text(message, args))

    return HttpLog


def _text(message: str, args: tuple[Any, ...]) -> str:
    try:
        return message % args if args else message
    except (TypeError, ValueError):
        return message


def _bind(endpoint: Endpoint, limits: Limits) -> socket.socket:
    sock = bind_tcp(endpoint, listen=False)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            # Accepted connections inherit it: the kernel ends one whose sent data stays
            # unacknowledged (or whose window stays shut) this long. Without it a client
            # that stops reading keeps its connection, and a task, until it goes away.
            timeout_ms = int(limits.send_timeout * 1000)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        sock.listen(limits.backlog)  # connections queue from now on, before hypercorn accepts
    except BaseException:
        sock.close()
        raise
    return sock


class _TlsConfig(Config):
    """hypercorn's configuration serving TLS with a context made elsewhere (whose
    certificate resolver/edge/tlscert.py replaces on reload)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context

    @property
    def ssl_enabled(self) -> bool:
        return True

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._context


def hypercorn_config(name: str, limits: Limits, tls: ssl.SSLContext | None = None) -> Config:
    """hypercorn's configuration: cleartext, or TLS with ``tls`` (ALPN decides between
    HTTP/2 and HTTP/1.1; a handshake must end within ``header_timeout``)."""
    config = Config() if tls is None else _TlsConfig(tls)
    if tls is not None:
        config.ssl_handshake_timeout = limits.header_timeout
    config.accesslog = None
    config.errorlog = None
    config.logger_class = _logger_class(name)
    config.h11_max_incomplete_size = limits.max_header_bytes
    config.h2_max_header_list_size = limits.max_header_bytes
    config.h2_max_concurrent_streams = limits.max_streams
    config.keep_alive_timeout = limits.header_timeout
    config.keep_alive_max_requests = limits.requests_per_connection
    config.read_timeout = limits.read_timeout  # type: ignore[assignment]
    config.backlog = limits.backlog
    config.graceful_timeout = limits.shutdown_grace
    config.include_server_header = False
    return config


class HttpServer:
    """An ASGI app served by hypercorn on the running event loop until ``close``."""

    def __init__(
        self,
        name: str,
        app: ASGIFramework,
        limits: Limits | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.app = app
        self.limits = limits or Limits()
        self.tls = tls  # served over TLS with this context when given
        self.addresses: list[tuple[str, int]] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, endpoints: Sequence[Endpoint], tls: Tls | None = None) -> None:
        """Listen on ``endpoints`` (and HTTPS on ``tls.endpoints``; OSError when one cannot
        be bound), then serve."""
        socks: list[socket.socket] = []
        secure = list(tls.endpoints) if tls is not None else []
        for endpoint in [*endpoints, *secure]:
            try:
                sock = _bind(endpoint, self.limits)
            except OSError:
                for bound in socks:
                    bound.close()
                raise
            socks.append(sock)
        self.addresses = [sock.getsockname()[:2] for sock in socks]
        if tls is not None:  # plain HTTP on ``endpoints``, HTTPS on ``tls.endpoints``
            config = hypercorn_config(self.name, self.limits, tls.context)
            binds = [f"fd://{sock.detach()}" for sock in socks]  # hypercorn owns them now
            plain = len(socks) - len(secure)
            config.insecure_bind, config.bind = binds[:plain], binds[plain:]
        else:  # every endpoint plain, or every one TLS with the server's own context
            config = hypercorn_config(self.name, self.limits, self.tls)
            config.bind = [f"fd://{sock.detach()}" for sock in socks]  # hypercorn owns them now
        self._task = asyncio.ensure_future(
            serve(self.app, config, shutdown_trigger=self._stop.wait, mode="asgi")
        )
        self._task.add_done_callback(self._done)

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            structlog.get_logger("sinkhole").error(
                "http_server_failed", http=self.name, error=repr(task.exception())
            )

    def close(self) -> None:
        """Stop accepting; responses under way get ``shutdown_grace`` to finish."""
        self._stop.set()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})
