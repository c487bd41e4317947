"""DNS over HTTPS to an upstream (RFC 8484): POST application/dns-message with httpx.

One persistent client per upstream. Over HTTP/2 (h2, chosen by ALPN) every query is a
stream of one connection, as many at once as the server allows; a server that speaks
only HTTP/1.1 gets up to MAX_CONNECTIONS connections, kept alive. A connection idle for
IDLE_TIMEOUT is closed. Queries carry message ID 0 (RFC 8484 section 4.1); the reply is
matched by its HTTP exchange and given the forwarder's ID back. A query whose
connection turns out to be gone (the server closed it while it was kept: httpx cannot
tell before using it) is sent once more, on a new one. A status other than 200,
another media type, or an exchange that fails is a failed query; one that could not
connect holds off new connections for a while (upstream_secure.py). Proxies named in
the environment are not used: queries go straight to the upstream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from resolver.edge.upstream_secure import IDLE_TIMEOUT, Channel, client_context, describe

MEDIA_TYPE = "application/dns-message"
MAX_CONNECTIONS = 8  # HTTP/1.1: queries at once; HTTP/2 multiplexes them over one
HEADERS = {"content-type": MEDIA_TYPE, "accept": MEDIA_TYPE}
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)
_LOST = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)  # connection gone


class HttpsChannel(Channel):
    """The DoH transport of one upstream."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: httpx.AsyncClient | None = None  # made at the first query
        self.tasks: set[asyncio.Task[None]] = set()
        self.extensions: dict[str, Any] = {"trace": self._trace}
        if self.spec.name:
            self.extensions["sni_hostname"] = self.spec.name  # the name the certificate must carry

    def _client(self) -> httpx.AsyncClient:
        if self.client is None:
            headers = dict(HEADERS)
            if self.spec.name:
                headers["host"] = self.spec.name
            self.client = httpx.AsyncClient(
                http2=True,
                verify=client_context(self.spec),
                timeout=self.timeout,
                limits=httpx.Limits(
                    max_connections=MAX_CONNECTIONS,
                    max_keepalive_connections=MAX_CONNECTIONS,
                    keepalive_expiry=IDLE_TIMEOUT,
                ),
                headers=headers,
                trust_env=False,
                follow_redirects=False,
            )
        return self.client

    def send(self, qid: int, message: bytes) -> None:
        if self.held_off():
            self.refuse(qid, f"not connected ({self.last_error})")
            return
        task = asyncio.get_running_loop().create_task(self._post(qid, message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, qid: int, message: bytes) -> None:
        body = b"\0\0" + self.padded(message)[2:]  # ID 0: RFC 8484 section 4.1
        for again in (True, False):
            try:
                response = await self._client().post(
                    self.spec.url, content=body, extensions=self.extensions
                )
                break
            except _CONNECT_ERRORS as exc:
                self.failed(qid, self.connect_failed(exc))
                return
            except _LOST as exc:
                if again:  # the server closed a kept connection: once more, on a new one
                    continue
                self.failed(qid, describe(exc))
                return
            except (httpx.HTTPError, OSError) as exc:  # a stream reset, a read timed out
                self.failed(qid, describe(exc))
                return
        media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if response.status_code != 200 or media != MEDIA_TYPE:
            self.failed(qid, f"HTTP status {response.status_code}, {media or 'no media type'}")
            return
        self.connected()
        data = response.content
        if data[:2] == b"\0\0":
            data = qid.to_bytes(2, "big") + data[2:]
        self.received(data)

    async def _trace(self, event: str, info: dict[str, Any]) -> None:
        if event == "connection.start_tls.complete":
            self.connections += 1

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        client, self.client = self.client, None
        if client is not None:
            # Closing is a coroutine: run it while the loop still turns (at shutdown).
            closing = asyncio.get_running_loop().create_task(client.aclose())
            self.tasks = {closing}
