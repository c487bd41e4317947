"""A real RPZ primary for the interop tests: BIND 9 (``named -g``) on loopback, a temp config.

The zone accepts dynamic updates signed with the transfer key (so a test changes it
with ``nsupdate`` and BIND sends NOTIFY at once to ``also-notify``), transfers are
allowed with that key only, and NOTIFY comes from 127.0.0.1.
"""

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
import dns.rdatatype
from support.procs import START_TIMEOUT, Process, free_port
from support.system import program

ZONE = "rpz.example."
KEY_NAME = "xfr-key"
ALGORITHM = "hmac-sha256"
READY_TIMEOUT = 15.0
UPDATE_TIMEOUT = 10.0


def new_secret() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def zone_text(serial: int, names: Iterable[str], refresh: int = 3600, retry: int = 600) -> str:
    """An RPZ zone: every name (relative to the zone) rewritten to NXDOMAIN (CNAME .)."""
    lines = [
        "$TTL 300",
        f"@ IN SOA ns.{ZONE} hostmaster.{ZONE} {serial} {refresh} {retry} 86400 300",
        "@ IN NS localhost.",
    ]
    lines += [f"{name} IN CNAME ." for name in names]
    return "\n".join(lines) + "\n"


class BindPrimary(Process):
    """``named`` serving ZONE as primary on 127.0.0.1:<free port>."""

    def __init__(
        self,
        workdir: Path,
        names: Iterable[str],
        notify: Iterable[tuple[str, int]],
        secret: str,
        serial: int = 1,
        provide_ixfr: bool = True,
        port: int | None = None,
        refresh: int = 3600,
        retry: int = 600,
    ) -> None:
        named = program("named")
        self.nsupdate = program("nsupdate")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        self.secret = secret
        self.keyfile = workdir / "xfr.key"
        self.keyfile.write_text(
            f'key "{KEY_NAME}" {{ algorithm {ALGORITHM}; secret "{secret}"; }};\n'
        )
        (workdir / "rpz.example.db").write_text(zone_text(serial, names, refresh, retry))
        targets = " ".join(f"{host} port {port};" for host, port in notify)
        conf = workdir / "named.conf"
        conf.write_text(
            f"""
include "{self.keyfile}";
controls {{ }};
options {{
    directory "{workdir}";
    pid-file "{workdir}/named.pid";
    session-keyfile "{workdir}/session.key";
    managed-keys-directory "{workdir}";
    listen-on port {self.port} {{ {self.host}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify explicit;
    notify-source {self.host};
    notify-delay 0;
    allow-query {{ 127.0.0.0/8; }};
    allow-transfer {{ key "{KEY_NAME}"; }};
    max-ixfr-ratio unlimited;
    provide-ixfr {"yes" if provide_ixfr else "no"};
}};
zone "{ZONE}" {{
    type primary;
    file "{workdir}/rpz.example.db";
    allow-update {{ key "{KEY_NAME}"; }};
    also-notify {{ {targets} }};
}};
"""
        )
        super().__init__([named, "-g", "-4", "-n", "1", "-c", str(conf)], workdir, "named")
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def soa_serial(self, timeout: float = 1.0) -> int | None:
        query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
        try:
            reply = dns.query.udp(query, self.host, timeout=timeout, port=self.port)
        except (dns.exception.Timeout, OSError):
            return None
        if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            return None
        return int(reply.answer[0][0].serial)

    def wait_ready(self) -> int:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self.alive:
                raise AssertionError(f"named exited early\n{self.diagnostics()}")
            serial = self.soa_serial(0.3)
            if serial is not None:
                return serial
            time.sleep(0.05)
        raise AssertionError(
            f"named did not serve {ZONE} within {READY_TIMEOUT} s\n{self.diagnostics()}"
        )

    def update(self, add: Iterable[str] = (), delete: Iterable[str] = ()) -> int:
        """Change the zone with a signed dynamic update; returns the new serial. BIND then
        sends NOTIFY to every also-notify target."""
        before = self.soa_serial()
        lines = [f"server {self.host} {self.port}", f"zone {ZONE}"]
        lines += [f"update delete {name}.{ZONE} CNAME" for name in delete]
        lines += [f"update add {name}.{ZONE} 300 CNAME ." for name in add]
        lines += ["send", ""]
        result = subprocess.run(
            [self.nsupdate, "-k", str(self.keyfile), "-t", "5"],
            input="\n".join(lines),
            capture_output=True,
            text=True,
            timeout=UPDATE_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"nsupdate failed: {result.stdout}{result.stderr}")
        after = self.soa_serial()
        assert after is not None and after != before, (before, after)
        return after

    def stop_named(self) -> None:
        """Stop named by its PID (SIGTERM, then SIGKILL after the timeout)."""
        if self.returncode is None:
            try:
                self.stop(timeout=START_TIMEOUT)
            except AssertionError:
                pass
