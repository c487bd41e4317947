"""The server under the unit's file-system sandbox and within its task cap.

``ProtectProc=invisible`` and ``ProcSubset=pid`` give the service a /proc of its own,
mounted ``hidepid=invisible,subset=pid`` in a private mount namespace
(``PrivateMounts=yes``): other users' processes are hidden and the files that are not
about a process (/proc/stat, /proc/meminfo, /proc/sys ...) are gone. The server is run
the same way here: a new mount namespace and that /proc, set up between fork and exec
(as root, like systemd). With two workers it must start, answer, serve /metrics, reload
and stop. Its tasks (processes and threads) are counted against ``TasksMax=``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.procs import free_port

from .conftest import (
    READY_TIMEOUT,
    REPO,
    STOP_TIMEOUT,
    NotifySocket,
    Server,
    policy_text,
    write_setup,
)
from .test_notify import assert_blocked, stop
from .test_unit import one

pytestmark = pytest.mark.blackbox

LIBC = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
PROC_OPTIONS = b"hidepid=invisible,subset=pid"  # ProtectProc=invisible, ProcSubset=pid


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def sandbox_proc() -> None:
    """Runs in the child between fork and exec: a private mount namespace and its own /proc."""
    _check(LIBC.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(LIBC.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    _check(LIBC.mount(b"proc", b"/proc", b"proc", flags, PROC_OPTIONS), "mount /proc")


@pytest.fixture(scope="module", autouse=True)
def can_mount_proc() -> None:
    """Mounting /proc takes CAP_SYS_ADMIN, as systemd has: run as root (CI always is)."""
    if os.geteuid() != 0:
        reason = "mounting /proc as systemd does needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    probe = subprocess.run(
        ["cat", "/proc/stat", "/proc/self/status"],
        preexec_fn=sandbox_proc,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # The sandbox is real: /proc/stat is gone, the process's own files are there.
    assert "No such file" in probe.stderr and "/proc/stat" in probe.stderr, probe.stderr
    assert "Pid:" in probe.stdout, probe.stdout


@pytest.fixture
def sandboxed(short_dir: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


def start(
    notify: NotifySocket, directory: Path, started: list[subprocess.Popen[bytes]]
) -> tuple[Server, int]:
    """Two workers and a metrics endpoint, in the sandbox; returns the server and that port."""
    workdir = Path(tempfile.mkdtemp(prefix="box-", dir=directory))
    config, policy, port = write_setup(workdir, policy_text(["blocked.example"]))
    settings = yaml.safe_load(config.read_text())
    metrics = free_port()
    settings.update(workers=2, metrics=f"127.0.0.1:{metrics}")
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    output = workdir / "output.log"
    env = {**os.environ, "NOTIFY_SOCKET": notify.address, "PYTHONUNBUFFERED": "1"}
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=sandbox_proc,
        )
    started.append(proc)
    return Server(proc, port, policy, output), metrics


def tasks(pid: int) -> int:
    """Threads of ``pid`` and of all its descendants: what TasksMax= counts."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        task_dir = Path(f"/proc/{current}/task")
        try:
            threads = list(task_dir.iterdir())
        except FileNotFoundError:
            continue
        total += len(threads)
        for thread in threads:
            try:
                pending += [int(c) for c in (thread / "children").read_text().split()]
            except FileNotFoundError:
                pass
    return total


def test_serves_reloads_and_stops_with_a_private_proc(
    notify_socket: NotifySocket, short_dir: Path, sandboxed: list[subprocess.Popen[bytes]]
) -> None:
    server, metrics = start(notify_socket, short_dir, sandboxed)
    notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)
    mounts = Path(f"/proc/{server.proc.pid}/mountinfo").read_text().splitlines()
    proc_mount = [m for m in mounts if m.split()[4] == "/proc"]
    assert proc_mount and "subset=pid" in proc_mount[-1], proc_mount
    assert_blocked(server.port, "blocked.example")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as reply:
        assert reply.status == 200
        assert b"# TYPE" in reply.read()
    for _ in range(2):
        server.signal(signal.SIGHUP)
        notify_socket.wait_for("RELOADING", "1", READY_TIMEOUT, server.proc)
        notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)
    server.wait_log("policy_reloaded")
    assert_blocked(server.port, "blocked.example")
    # Supervisor, two workers and their threads, after two reloads: far below the cap.
    count = tasks(server.proc.pid)
    assert 3 <= count <= int(one("TasksMax")) // 8, count
    assert "Traceback" not in server.log(), server.log()
    stop(server, notify_socket)
