"""dnsdist in front of sinkhole instances, for the scale-out tests (Debian's dnsdist 1.7)."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
from support.procs import Process, free_port
from support.system import program

HEALTH_NAME = "health.scaleout.test."  # blocked by a YAML policy: answered without upstream
READY_TIMEOUT = 15.0


class Dnsdist(Process):
    """``dnsdist --supervised`` on 127.0.0.1:<free port>, one backend per address, each
    health-checked every second (down after one failed check, up after one good one), and
    a console on loopback to drain a backend."""

    def __init__(self, workdir: Path, backends: Iterable[tuple[str, int]]) -> None:
        binary = program("dnsdist")
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port(self.host)
        self.console_port = free_port(self.host)
        self.backends = list(backends)
        self.conf = workdir / "dnsdist.conf"
        key = base64.b64encode(os.urandom(32)).decode()
        lines = [
            'setSecurityPollSuffix("")',  # no polling of the vendor's DNS name
            f'setLocal("{self.host}:{self.port}")',
            f'controlSocket("{self.host}:{self.console_port}")',
            f'setKey("{key}")',
            "setServerPolicy(roundrobin)",
        ]
        for index, (host, port) in enumerate(self.backends):
            lines.append(
                f'newServer({{address="{host}:{port}", name="s{index}", '
                f'checkName="{HEALTH_NAME}", checkInterval=1, checkTimeout=300, '
                "maxCheckFailures=1, rise=1})"
            )
        self.conf.write_text("\n".join(lines) + "\n")
        self.program = binary
        super().__init__(
            [binary, "--supervised", "--disable-syslog", "-C", str(self.conf)], workdir, "dnsdist"
        )
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise

    def ask(self, name: str, timeout: float = 1.0) -> dns.message.Message:
        query = dns.message.make_query(name, "A")
        return dns.query.udp(query, self.host, timeout=timeout, port=self.port)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"dnsdist exited\n{self.diagnostics()}")
            try:
                if self.ask(HEALTH_NAME, 0.3).rcode() == dns.rcode.NOERROR:
                    return
            except (dns.exception.Timeout, OSError):
                pass
            time.sleep(0.05)
        raise AssertionError(
            f"dnsdist did not answer within {READY_TIMEOUT} s\n{self.diagnostics()}"
        )

    def console(self, command: str) -> str:
        """Run a console command (the control socket and key come from the config)."""
        result = subprocess.run(
            [self.program, "-C", str(self.conf), "-e", command],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"dnsdist console {command!r}: {result.stdout}{result.stderr}")
        return result.stdout

    def marked(self, index: int, state: str, start: int = 0) -> bool:
        """Whether dnsdist logged backend ``index`` as ``state`` (up/down) since line ``start``."""
        host, port = self.backends[index]
        needle = f"({host}:{port}) as '{state}'"
        with self._cond:
            return any(needle in line for line in self.lines[start:])

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)
