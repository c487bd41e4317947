"""route_app, the ASGI layer every HTTP endpoint shares, driven through ASGI messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from resolver.edge.http import Limits, Reply, route_app

Sent = list[dict[str, Any]]


def scope(method: str = "GET", path: str = "/x", headers: Any = ()) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": list(headers),
    }


async def call(app: Any, request: dict[str, Any], sent: Sent) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(request, receive, send)


def run(app: Any, request: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: Sent = []
    asyncio.run(call(app, request, sent))
    start, *body = sent
    assert not body[-1].get("more_body", False)
    return start["status"], dict(start["headers"]), b"".join(m["body"] for m in body)


def whole() -> Reply:
    return 200, "text/plain", b"hello\n"


def chunks() -> Reply:
    return 200, "text/plain", iter([b"a\n", b"b\n"])


APP = route_app({"/x": whole, "/stream": chunks}, Limits())


def test_get_and_head() -> None:
    status, headers, body = run(APP, scope())
    assert (status, body, headers[b"content-length"]) == (200, b"hello\n", b"6")
    assert headers[b"content-type"] == b"text/plain"
    status, headers, body = run(APP, scope("HEAD"))
    assert (status, body, headers[b"content-length"]) == (200, b"", b"6")


def test_a_streamed_body_comes_in_chunks_and_head_reads_none() -> None:
    assert run(APP, scope(path="/stream"))[::2] == (200, b"a\nb\n")
    taken = []

    def counted() -> Iterator[bytes]:
        taken.append(1)
        yield b"a\n"

    app = route_app({"/s": lambda: (200, "text/plain", counted())}, Limits())
    assert run(app, scope("HEAD", "/s"))[::2] == (200, b"")
    assert taken == []


def test_other_methods_and_paths() -> None:
    status, headers, body = run(APP, scope("DELETE"))
    assert status == 405 and headers[b"allow"] == b"GET, HEAD"
    status, _, body = run(APP, scope(path="/<b>probe</b>"))
    assert status == 404 and b"probe" not in body and b"/x" in body


def test_a_head_too_large_gets_431() -> None:
    big = [(b"x-big", b"a" * 9000)]
    assert run(APP, scope(headers=big))[0] == 431
    assert run(APP, scope(path="/x" + "a" * 9000))[0] == 431
    assert run(APP, scope(headers=[(b"x-fine", b"a" * 8000)]))[0] == 200


def test_at_the_cap_one_more_request_gets_503_at_once() -> None:
    async def main() -> list[int]:
        release = asyncio.Event()
        app = route_app({"/x": whole}, Limits(max_requests=2))
        held: list[Sent] = [[], []]

        async def hold(sent: Sent) -> None:
            """A request whose client takes nothing until ``release``."""

            async def receive() -> dict[str, Any]:
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                await release.wait()

            await app(scope(), receive, send)

        tasks = [asyncio.ensure_future(hold(h)) for h in held]
        await asyncio.sleep(0)
        refused: Sent = []
        await call(app, scope(), refused)
        release.set()
        await asyncio.gather(*tasks)
        after: Sent = []
        await call(app, scope(), after)
        return [refused[0]["status"], held[0][0]["status"], after[0]["status"]]

    assert asyncio.run(main()) == [503, 200, 200]


def test_a_client_that_stops_reading_is_given_up() -> None:
    async def main() -> Sent:
        app = route_app({"/stream": chunks}, Limits(send_timeout=0.05))
        sent: Sent = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message.get("body"):
                await asyncio.Event().wait()  # never taken

        await asyncio.wait_for(app(scope(path="/stream"), receive, send), 2.0)
        return sent

    sent = asyncio.run(main())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


def test_lifespan_is_acknowledged() -> None:
    async def main() -> Sent:
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: Sent = []

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await APP({"type": "lifespan"}, receive, send)
        return sent

    assert [m["type"] for m in asyncio.run(main())] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
