"""The unit sets MemoryDenyWriteExecute=yes: the server must run without writable+executable memory.

The kernel's own switch for the same rule, prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN)
(Linux 6.3+, what systemd uses for this setting where available), is applied to the
server process before it starts; it is inherited across exec.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys

import pytest

from .conftest import READY_TIMEOUT, REPO, NotifySocket, StartServer, policy_text
from .test_notify import assert_blocked, stop

pytestmark = pytest.mark.blackbox

PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_MDWE_REFUSE_EXEC_GAIN = 1
LIBC = ctypes.CDLL(None, use_errno=True)


def deny_write_execute() -> None:
    """Runs in the child between fork and exec."""
    if LIBC.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


@pytest.fixture(scope="module", autouse=True)
def mdwe_enforced() -> None:
    """The kernel supports PR_SET_MDWE, and a W+X mapping really fails in a child that set it."""
    if LIBC.prctl(PR_GET_MDWE, 0, 0, 0, 0) < 0:
        pytest.fail(
            "this kernel has no prctl(PR_SET_MDWE) (Linux 6.3+ needed); "
            "MemoryDenyWriteExecute= cannot be tried out here",
            pytrace=False,
        )
    probe = (
        "import mmap, ctypes\n"
        "assert ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) == 1\n"
        "try:\n"
        "    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "except PermissionError:\n"
        "    print('refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        preexec_fn=deny_write_execute,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.strip() == "refused", result.stderr


def test_check_runs_without_write_execute_memory() -> None:
    """ExecStartPre= (`sinkhole check`) under the same restriction."""
    result = subprocess.run(
        [sys.executable, "-m", "resolver", "check"],
        cwd=REPO,
        preexec_fn=deny_write_execute,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok:")


def test_serve_runs_without_write_execute_memory(
    notify_socket: NotifySocket, start_server: StartServer
) -> None:
    server = start_server(
        notify_socket, policy_text(["blocked.example"]), preexec_fn=deny_write_execute
    )
    notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)
    assert_blocked(server.port, "blocked.example")
    server.signal(signal.SIGHUP)  # the reload builds the new policy in a worker thread
    notify_socket.wait_for("RELOADING", "1", READY_TIMEOUT, server.proc)
    notify_socket.wait_for("READY", "1", READY_TIMEOUT, server.proc)
    assert_blocked(server.port, "blocked.example")
    server.wait_log("policy_reloaded")
    stop(server, notify_socket)
