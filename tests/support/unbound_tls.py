"""Unbound (Debian) on loopback as an encrypted upstream: DNS over TLS and DNS over HTTPS
(HTTP/2) with a certificate from the test's CA, plain DNS too, all answering from
``local-data``. Names under ``slow.test.`` are forwarded to a given loopback server
(the fake upstream, whose ``slow<N>-`` names come late); every other name is refused,
so nothing leaves loopback.

``Relay`` is a TCP relay that counts the connections made through it: what a test
puts between sinkhole and Unbound to see how many TLS connections were opened.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from support.certs import SERVER_NAME, TlsFiles
from support.procs import free_port
from support.unbound import UnboundProcess

LOCAL_A = "198.51.100.1"
LOCAL_AAAA = "2001:db8::1"
LOCAL_NAME = "a.upstream.test"
SOA = "ns.upstream.test. host.upstream.test. 1 3600 600 86400 30"


class EncryptedUnbound(UnboundProcess):
    """``unbound -d`` answering over UDP/TCP (``port``), DoT (``tls_port``) and DoH
    (``https_port``, path /dns-query) on 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        files: TlsFiles,
        slow_to: tuple[str, int] | None = None,
        idle_ms: int = 30000,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port()
        self.https_port = free_port()
        self.log_path = workdir / "unbound.log"
        forward = ""
        if slow_to is not None:
            forward = f"""\
    local-zone: "slow.test." transparent
    do-not-query-localhost: no
forward-zone:
    name: "slow.test."
    forward-addr: {slow_to[0]}@{slow_to[1]}
"""
        config = workdir / "unbound.conf"
        config.write_text(
            f"""\
server:
    interface: 127.0.0.1@{self.port}
    interface: 127.0.0.1@{self.tls_port}
    interface: 127.0.0.1@{self.https_port}
    port: {self.port}
    tls-port: {self.tls_port}
    https-port: {self.https_port}
    tls-service-key: "{files.key}"
    tls-service-pem: "{files.cert}"
    so-reuseport: no
    tcp-idle-timeout: {idle_ms}
    do-ip6: no
    chroot: ""
    username: ""
    directory: "{workdir}"
    logfile: "{self.log_path}"
    use-syslog: no
    pidfile: "{workdir / "unbound.pid"}"
    num-threads: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    local-zone: "." refuse
    local-zone: "upstream.test." static
    local-data: "{LOCAL_NAME}. 300 IN A {LOCAL_A}"
    local-data: "{LOCAL_NAME}. 300 IN AAAA {LOCAL_AAAA}"
    local-data: "upstream.test. 300 IN SOA {SOA}"
{forward}remote-control:
    control-enable: no
"""
        )
        super().__init__(config, workdir, self.port, LOCAL_NAME, self.log_path)

    def tls(self, port: int | None = None, name: str = SERVER_NAME) -> str:
        """The ``upstreams`` entry of its DoT port (or of ``port``, a relay to it)."""
        return f"tls://127.0.0.1:{port or self.tls_port}#{name}"

    def https(self, port: int | None = None, name: str = SERVER_NAME) -> str:
        return f"https://127.0.0.1:{port or self.https_port}/dns-query#{name}"


class Relay:
    """Accepts TCP connections on a free loopback port and pipes each to ``target``;
    ``accepted`` counts them, ``closed`` those the server side has closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.accepted = 0
        self.closed = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.1)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            with self._lock:
                self.accepted += 1
                self._open += [client, upstream]
            for a, b, back in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(a, b, back), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, back: bool) -> None:
        source.settimeout(None)
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            if back:  # the server's side ended
                with self._lock:
                    self.closed += 1

    def close(self) -> None:
        self._stopped.set()
        self._server.close()
        self._thread.join(5)
        with self._lock:
            for sock in self._open:
                sock.close()
