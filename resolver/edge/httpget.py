"""One HTTPS GET of a published document, as a list fetch needs it (httpx does HTTP).

The server's certificate is checked against the system trust store (OpenSSL's default
places, which honour SSL_CERT_FILE and SSL_CERT_DIR), or against one CA file instead.
Redirects are followed to HTTPS addresses only. The request may be conditional
(If-None-Match, If-Modified-Since): a 304 answer carries no body. The body is counted
as it arrives, after any Content-Encoding is undone, and the fetch stops at ``limit``
bytes; the whole exchange has one deadline, so a server that sends slowly cannot hold
a fetch for ever. Proxies named by HTTPS_PROXY and NO_PROXY are used.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

from resolver.edge.faults import causes

USER_AGENT = "sinkhole (DNS sinkhole resolver; list fetcher)"
MAX_REDIRECTS = 5


class FetchError(Exception):
    """The document could not be fetched; the message says why, in words."""


class TooLarge(FetchError):
    """The body is larger than the limit (nothing of it is kept)."""

    def __init__(self, limit: int, seen: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit
        self.seen = seen


@dataclass(frozen=True, slots=True)
class Got:
    status: int  # 200, or 304: the copy the request named is still current
    body: bytes  # empty for 304
    etag: str = ""
    last_modified: str = ""


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """Certificates checked, host names too: against ``ca_file`` alone when given, else the
    system trust store. Reads files: call it off the event loop."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)


async def _https_only(request: httpx.Request) -> None:
    if request.url.scheme != "https":
        raise FetchError(f"redirected to {request.url}, which is not an HTTPS address")


def _reason(exc: BaseException) -> str:
    """The failure in words, from the deepest cause that says more than httpx does: an
    untrusted certificate, a failed TLS handshake, or the errno of a connection (refused,
    no route to host)."""
    prefix = "cannot connect: " if isinstance(exc, httpx.ConnectError) else ""
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the server's certificate is not trusted: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
            return prefix + os.strerror(cause.errno)
    text = str(exc).strip() or type(exc).__name__
    return prefix + text


async def get(
    url: str,
    context: ssl.SSLContext,
    limit: int,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> Got:
    """The document at ``url``; FetchError on any failure (TooLarge past ``limit``)."""
    try:
        async with asyncio.timeout(timeout):
            async with (
                httpx.AsyncClient(
                    verify=context,
                    timeout=httpx.Timeout(timeout),
                    follow_redirects=True,
                    max_redirects=MAX_REDIRECTS,
                    event_hooks={"request": [_https_only]},
                    headers={"User-Agent": USER_AGENT},
                ) as client,
                client.stream("GET", url, headers=headers or {}) as response,
            ):
                return await _read(response, limit)
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(f"no complete answer within {timeout:g} s") from None
    except httpx.TooManyRedirects:
        raise FetchError(f"more than {MAX_REDIRECTS} redirects") from None
    except (httpx.HTTPError, ssl.SSLError, OSError) as exc:
        raise FetchError(_reason(exc)) from None


async def _read(response: httpx.Response, limit: int) -> Got:
    etag = response.headers.get("etag", "")
    last_modified = response.headers.get("last-modified", "")
    if response.status_code == 304:
        return Got(304, b"", etag, last_modified)
    if response.status_code != 200:
        phrase = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise FetchError(f"the server answered {response.status_code}{phrase}")
    declared = response.headers.get("content-length", "")
    identity = response.headers.get("content-encoding", "identity").lower() == "identity"
    if identity and declared.isdigit() and int(declared) > limit:
        raise TooLarge(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit, size)
        chunks.append(chunk)
    return Got(200, b"".join(chunks), etag, last_modified)
