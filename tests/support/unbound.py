"""``unbound -d`` as a test's process: its configuration checked first, ready once it
answers a probe over UDP."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
from support.procs import START_TIMEOUT, Process
from support.system import program


class UnboundProcess(Process):
    """Started on ``config`` (which makes it listen on 127.0.0.1:``port``); ``log`` is
    the file its configuration logs to, shown when it does not start."""

    def __init__(self, config: Path, workdir: Path, port: int, probe: str, log: Path) -> None:
        self.port = port
        check = subprocess.run(
            [program("unbound-checkconf"), str(config)], capture_output=True, text=True, timeout=30
        )
        assert check.returncode == 0, check.stdout + check.stderr
        super().__init__([program("unbound"), "-d", "-c", str(config)], workdir, "unbound")
        try:
            self._wait_ready(probe, log)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, probe: str, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                query = dns.message.make_query(probe, "A")
                dns.query.udp(query, "127.0.0.1", timeout=0.2, port=self.port)
                return
            except (dns.exception.Timeout, OSError):
                pass
            if not self.alive or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
                raise AssertionError(f"unbound did not start\n{self.diagnostics()}\n{text}")
