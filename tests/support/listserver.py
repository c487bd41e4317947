"""An HTTPS server on 127.0.0.1 that publishes block lists, for the list-fetching tests.

Its certificate comes from a CA made by trustme for the test (``ca_file``), so a client
that trusts only the system store refuses it. It answers GET with the document at the
path, an ETag (the body's digest) and Last-Modified, and 304 to a matching
If-None-Match; every request is recorded. It can be stopped and started again on the
same port (a publisher that is down for a while).
"""

from __future__ import annotations

import hashlib
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from support.procs import free_port

LAST_MODIFIED = "Mon, 01 Jun 2026 00:00:00 GMT"


class ListServer:
    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = workdir / "list-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(self.context)
        self.documents: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self.requests: list[tuple[str, dict[str, str], int]] = []  # path, headers, status
        self.lock = threading.Lock()
        self.port = free_port()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def publish(self, path: str, body: bytes) -> None:
        with self.lock:
            self.documents[path] = body

    def statuses(self, path: str) -> list[int]:
        with self.lock:
            return [status for p, _, status in self.requests if p == path]

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with server.lock:
                    body = server.documents.get(self.path)
                    moved = server.redirects.get(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if moved is not None:
                    status = 302
                    self._answer(302, b"", {"Location": moved})
                elif body is None:
                    self._answer(404, b"not found\n", {})
                    status = 404
                else:
                    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                    fields = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
                    if headers.get("if-none-match") == etag:
                        status = 304
                        self._answer(304, b"", fields)
                    else:
                        status = 200
                        self._answer(200, body, fields)
                with server.lock:
                    server.requests.append((self.path, headers, status))

            def _answer(self, status: int, body: bytes, fields: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in fields.items():
                    self.send_header(key, value)
                if status != 304:
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        httpd.socket = self.context.wrap_socket(httpd.socket, server_side=True)
        self.httpd = httpd
        self.thread = threading.Thread(target=httpd.serve_forever, name="list-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop answering: connections to the port are refused until ``start``."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        if self.thread is not None:
            self.thread.join(5.0)
            self.thread = None
