"""Fixtures for the systemd integration: a notify socket and a server process that uses it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from support.procs import REPO, dead_port, free_port, standard_settings, write_config

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class Message:
    """One sd_notify datagram: its KEY=VALUE fields and the sender's PID."""

    fields: dict[str, str]
    pid: int

    def __contains__(self, key: str) -> bool:
        return key in self.fields


@dataclass
class NotifySocket:
    """What systemd listens on: an AF_UNIX datagram socket, by path or in the abstract namespace."""

    address: str  # the NOTIFY_SOCKET value
    sock: socket.socket
    received: list[Message] = field(default_factory=list)

    def receive(self, timeout: float) -> Message | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
        except TimeoutError:
            return None
        pid = 0
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = UCRED.unpack(payload[: UCRED.size])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        message = Message(fields, pid)
        self.received.append(message)
        return message

    def wait_for(
        self, key: str, value: str, timeout: float, proc: subprocess.Popen[bytes]
    ) -> Message:
        """The first message (from now on) with ``key=value``; fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(
                    f"no {key}={value} within {timeout}s; received {self.received}; "
                    f"server exit code {proc.poll()}",
                    pytrace=False,
                )
            message = self.receive(min(left, 0.2))
            if message is not None and message.fields.get(key) == value:
                return message
            if message is None and proc.poll() is not None:
                pytest.fail(
                    f"the server exited with {proc.returncode} before {key}={value}; "
                    f"received {self.received}",
                    pytrace=False,
                )


def open_notify_socket(kind: str, directory: Path) -> NotifySocket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    if kind == "abstract":
        name = f"sinkhole-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        return NotifySocket("@" + name, sock)
    path = directory / "notify"
    sock.bind(str(path))
    return NotifySocket(str(path), sock)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, short_dir: Path) -> Iterator[NotifySocket]:
    """NOTIFY_SOCKET as a file system path and as "@name" (abstract namespace)."""
    notify = open_notify_socket(request.param, short_dir)
    yield notify
    notify.sock.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    policy: Path
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-4000:]

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait_log(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the server's output contains ``text``."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() >= deadline:
                pytest.fail(f"no {text!r} in the server output:\n{self.log()}", pytrace=False)
            time.sleep(0.05)


def write_setup(directory: Path, text: str) -> tuple[Path, Path, int]:
    """A config (loopback listener, an upstream nothing answers) and one policy file."""
    port = free_port()
    policies = directory / "policies"
    policies.mkdir()
    policy = policies / "test.yaml"
    policy.write_text(text)
    settings = standard_settings([f"127.0.0.1:{dead_port()}"])
    settings.update(listen=[f"127.0.0.1:{port}"], upstream_timeout=0.2, query_timeout=0.5)
    return write_config(directory, settings), policy, port


def policy_text(names: list[str]) -> str:
    """A policy sending ``names`` to the warning page."""
    block = "".join(f"  - {name}\n" for name in names)
    head = "id: systemd-test\ntitle: Blocked by the systemd tests\naction: warning-page\n"
    return f"{head}block:\n{block}"


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(short_dir: Path) -> Iterator[StartServer]:
    """Start ``python -m resolver serve`` with NOTIFY_SOCKET set; killed on teardown if still up."""
    started: list[subprocess.Popen[bytes]] = []
    outputs: list[IO[bytes]] = []

    def start(
        notify: NotifySocket,
        policy: str,
        preexec_fn: Callable[[], None] | None = None,
    ) -> Server:
        workdir = Path(tempfile.mkdtemp(prefix="srv-", dir=short_dir))
        config, policy_file, port = write_setup(workdir, policy)
        output = workdir / "output.log"
        out = output.open("wb")
        outputs.append(out)
        env = {**os.environ, "NOTIFY_SOCKET": notify.address, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        started.append(proc)
        return Server(proc, port, policy_file, output)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    for out in outputs:
        out.close()
