"""request_app: one function sees the request and gives the response, within the limits."""

from __future__ import annotations

import asyncio
from typing import Any

from resolver.edge.http import Limits, Request, Response, request_app

seen: list[Request] = []


def handler(request: Request) -> Response:
    seen.append(request)
    return Response(451, "text/html; charset=utf-8", b"<p>page</p>", (("link", "<u>"),))


APP = request_app(handler, Limits(max_header_bytes=200))


def run(
    method: str, path: str = "/any", headers: Any = ()
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": list(headers),
        "client": ("192.0.2.7", 40000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(APP(scope, receive, send))  # type: ignore[arg-type]
    start, *body = sent
    return start["status"], dict(start["headers"]), b"".join(m["body"] for m in body)


def test_the_request_reaches_the_handler_and_its_headers_the_client() -> None:
    seen.clear()
    status, headers, body = run(
        "GET", headers=[(b"Host", b"a.example"), (b"accept-language", b"ko")]
    )
    assert (status, body) == (451, b"<p>page</p>")
    assert headers[b"link"] == b"<u>" and headers[b"cache-control"] == b"no-store"
    assert headers[b"content-length"] == b"11"
    [request] = seen
    assert request.header(b"host") == "a.example" and request.header(b"accept-language") == "ko"
    assert request.header(b"cookie") == "" and request.client == "192.0.2.7"


def test_head_has_the_length_and_no_body() -> None:
    status, headers, body = run("HEAD")
    assert (status, body, headers[b"content-length"]) == (451, b"", b"11")


def test_other_methods_and_large_heads_never_reach_the_handler() -> None:
    seen.clear()
    status, headers, _ = run("POST")
    assert status == 405 and headers[b"allow"] == b"GET, HEAD"
    assert run("GET", headers=[(b"x-filler", b"a" * 300)])[0] == 431
    assert seen == []
