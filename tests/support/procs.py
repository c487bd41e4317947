"""Processes for tests: the fake upstream and the sinkhole server, on free loopback ports.

Every wait has a deadline; every process is stopped by its own PID.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
FAKE_UPSTREAM = REPO / "tests" / "support" / "fake_upstream.py"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

# The warning page every test configuration uses (the TTL differs from the built-in 60).
WARNING_IPV4 = "192.0.2.80"
WARNING_IPV6 = "2001:db8::80"
WARNING_TTL = 123


def _outside_ephemeral() -> range:
    """Ports the kernel never hands out on its own (bind to port 0, a client's source
    port): a port picked there stays free until a test binds it, whatever the servers
    and clients of other tests open meanwhile."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(10000, low) if low - 10000 >= 4096 else range(high + 1, 65536)


def bound_pair(host: str = "127.0.0.1") -> tuple[socket.socket, socket.socket, int]:
    """A UDP socket and a listening TCP socket bound to one port on ``host``, left open."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports = _outside_ephemeral()
    for _ in range(200):
        port = random.choice(ports)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)  # no SO_REUSEADDR: nothing lingers there
        try:
            udp.bind((host, port))
            tcp.bind((host, port))
        except OSError:
            udp.close()
            tcp.close()
            continue
        tcp.listen(8)
        return udp, tcp, port
    raise RuntimeError(f"no port free for both UDP and TCP on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that is free for both UDP and TCP right now."""
    udp, tcp, port = bound_pair(host)
    udp.close()
    tcp.close()
    return port


def dead_port(host: str = "127.0.0.1") -> int:
    """A port that was bound and closed again: nothing listens there."""
    return free_port(host)


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound for UDP or TCP, or None when both are free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind, name in ((socket.SOCK_DGRAM, "UDP"), (socket.SOCK_STREAM, "TCP")):
        with socket.socket(family, kind) as sock:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                return f"{name} {host} port {port}: {exc.strerror}"
    return None


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Call ``check`` until it returns something truthy; return that, or the last falsy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Process:
    """A child process whose stdout lines are collected by a reader thread."""

    def __init__(self, argv: list[str], cwd: Path, name: str) -> None:
        self.argv = argv
        self.name = name
        self.stderr_path = cwd / f"{name}.stderr"
        self.lines: list[str] = []
        self._cond = threading.Condition()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in _finish
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.returncode: int | None = None
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, match: Callable[[str], bool], timeout: float, start: int = 0) -> str:
        """The first stdout line from index ``start`` on for which ``match`` is true."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if match(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    where = f"{self.name}: no matching output line within {timeout} s"
                    raise AssertionError(f"{where}\n{self.diagnostics()}")
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(
                        f"{self.name} exited with {self.popen.returncode}\n{self.diagnostics()}"
                    )
                self._cond.wait(min(left, 0.1))

    def diagnostics(self) -> str:
        with self._cond:
            out = "\n".join(self.lines[-30:])
        try:
            err = self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            err = ""
        return f"argv: {self.argv}\n--- stdout (last lines) ---\n{out}\n--- stderr ---\n{err}"

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Send ``sig`` and wait for the exit; kill after ``timeout``. Returns the exit status."""
        if self.returncode is not None:
            return self.returncode
        self.send_signal(sig)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s of signal {sig}\n{self.diagnostics()}"
            ) from None
        self._finish(code)
        return code

    def kill(self) -> None:
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
        self._finish(self.popen.wait(STOP_TIMEOUT))

    def _finish(self, code: int) -> None:
        self.returncode = code
        self._reader.join(STOP_TIMEOUT)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._stderr.close()


class FakeUpstream(Process):
    """tests/support/fake_upstream.py on a free port, logging every query it receives."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = free_port(host)
        self.log_path = workdir / f"upstream-{self.port}.log"
        self.log_path.touch()
        argv = [sys.executable, str(FAKE_UPSTREAM), "--host", host, "--port", str(self.port)]
        argv += ["--log", str(self.log_path)]
        super().__init__(argv, workdir, f"fake-upstream-{self.port}")
        try:
            self.wait_line(lambda line: line.strip() == "ready", START_TIMEOUT)
        except BaseException:
            self.kill()
            raise

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def queries(self) -> list[tuple[str, str, str]]:
        """(transport, lower-case name with trailing dot, type) for every query received."""
        return [(t, n, q) for t, n, q, _, _ in self._lines()]

    def sources(self, transport: str = "udp") -> list[tuple[int, int]]:
        """(source port, query ID) of every query received over ``transport``, in order."""
        return [(int(port), int(qid)) for t, _, _, port, qid in self._lines() if t == transport]

    def received(self, name: str) -> list[str]:
        """``name`` as it arrived (letter case kept) in every query for it."""
        wanted = name.lower().rstrip(".") + "."
        return [parts[5] for parts in self._lines(6) if parts[1] == wanted]

    def _lines(self, fields: int = 5) -> list[list[str]]:
        lines = (line.split() for line in self.log_path.read_text().splitlines())
        return [parts[:fields] for parts in lines if len(parts) >= fields]

    def count(self, name: str, qtype: str | None = None, transport: str | None = None) -> int:
        """How many queries for ``name`` (any case, dot optional) reached the upstream."""
        wanted = name.lower().rstrip(".") + "."
        return sum(
            1
            for t, n, q in self.queries()
            if n == wanted
            and (qtype is None or q == qtype)
            and (transport is None or t == transport)
        )


def standard_settings(upstreams: Iterable[str]) -> dict[str, Any]:
    """Settings every test configuration starts from: fast timeouts, the test warning page."""
    return {
        "upstreams": list(upstreams),
        "policies": ["policies/*.yaml"],
        "warning_page": {"ipv4": [WARNING_IPV4], "ipv6": [WARNING_IPV6], "ttl": WARNING_TTL},
        "upstream_timeout": 0.3,
        "query_timeout": 1.0,
        "tcp_idle_timeout": 5.0,
        "query_log": "blocked",
        "workers": 1,
    }


class Sinkhole(Process):
    """``python -m resolver serve`` as a child, ready once it logged "started"."""

    def __init__(
        self,
        workdir: Path,
        config: Path | None,
        port: int,
        port6: int | None = None,
        name: str = "sinkhole",
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.config = config
        self.host = host
        self.port = port
        self.host6 = "::1"
        self.port6 = port6
        argv = [sys.executable, "-m", "resolver", "serve"]
        if config is not None:
            argv += ["--config", str(config)]
        super().__init__(argv, workdir, name)
        try:
            self.started = self.wait_event("started", START_TIMEOUT)
        except BaseException:
            self.kill()
            raise

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Every JSON log line so far (those with ``event`` when given)."""
        out = []
        with self._cond:
            lines = list(self.lines)
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                out.append(record)
        return out

    def wait_event(self, event: str, timeout: float, start: int = 0) -> dict[str, Any]:
        """The first JSON log line with ``event`` at or after line index ``start``."""

        def match(line: str) -> bool:
            try:
                record = json.loads(line)
            except ValueError:
                return False
            return isinstance(record, dict) and record.get("event") == event

        return dict(json.loads(self.wait_line(match, timeout, start)))

    def mark(self) -> int:
        """The index of the next stdout line, for waiting on lines logged after now."""
        with self._cond:
            return len(self.lines)

    @property
    def policies_dir(self) -> Path:
        return self.workdir / "policies"

    def write_policy(self, filename: str, text: str) -> Path:
        path = self.policies_dir / filename
        path.write_text(text)
        return path


def write_config(workdir: Path, settings: dict[str, Any]) -> Path:
    path = workdir / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


class SinkholeFactory:
    """Starts sinkhole servers with their own config and policies; stops them all on close."""

    def __init__(self, workdir: Path, upstream: FakeUpstream) -> None:
        self.workdir = workdir
        self.upstream = upstream
        self.started: list[Sinkhole] = []

    def __call__(
        self,
        policies: dict[str, str] | None = None,
        ipv6: bool = False,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        settings: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> Sinkhole:
        """A running server; ``policies`` maps file names to YAML text, ``overrides`` config keys.

        ``settings`` holds more config keys, for names the parameters take (``policies``).
        A key set to None is left out of the configuration. The server listens on
        ``host:port`` (a free port unless given) and on [::1] too with ``ipv6``. Its files
        are in ``workdir/name`` (``sinkhole-N`` unless given); a server started again
        with the same name finds them there.
        """
        index = len(self.started)
        workdir = self.workdir / (name or f"sinkhole-{index}")
        (workdir / "policies").mkdir(parents=True, exist_ok=name is not None)
        for filename, text in (policies or {}).items():
            (workdir / "policies" / filename).write_text(text)
        port = port if port is not None else free_port(host)
        port6 = free_port("::1") if ipv6 else None
        config_keys = standard_settings([self.upstream.endpoint])
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        config_keys["listen"] = [listen] + ([f"[::1]:{port6}"] if port6 else [])
        config_keys.update(settings or {}, **overrides)
        config = write_config(workdir, {k: v for k, v in config_keys.items() if v is not None})
        label = f"{name}-{index}" if name else f"sinkhole-{index}"
        server = Sinkhole(workdir, config, port, port6, name=label, host=host)
        self.started.append(server)
        return server

    def close(self) -> list[str]:
        """Stop every server still running with SIGTERM; describe those that did not exit 0."""
        return stop_all(self.started)


def stop_all(servers: Iterable[Sinkhole]) -> list[str]:
    """Stop every server still running with SIGTERM; describe those that did not exit 0."""
    problems = []
    for server in servers:
        if server.returncode is not None:
            continue
        try:
            code = server.stop(signal.SIGTERM)
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        if code != 0:
            problems.append(f"{server.name} exited with {code} on SIGTERM\n{server.diagnostics()}")
    return problems
