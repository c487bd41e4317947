"""The running server's side of `sinkhole diff`, read and compared in a forked child.

Read in a thread, the million lines of GET /entries held the interpreter lock for most
of a second while the new files were built. A forked child has an interpreter of its
own: it reads the running server's policies and entries, and cuts its lines into names,
on the other core while this process builds the new files; then it takes the new lines
as they are written (a chunk at a time, through a pipe, each cut as it comes), compares
both sides, and sends back only what changed (resolver.tools.diff.Compared).

What the child raises (the control endpoint could not be read) is sent back and raised
here, where the diff asks for what the child found.
"""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Iterable
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

from resolver.tools import diff
from resolver.tools.control import ControlError


def fork_available() -> bool:
    return hasattr(os, "fork")


class ReadInChild:
    """The running server's side (diff.Reading), read in a child started at once."""

    def __init__(self, server: str) -> None:
        self.connection, theirs = Pipe()
        self.pid: int | None = os.fork()
        if self.pid == 0:  # pragma: no cover - the child: measured through sinkhole diff
            self.connection.close()
            _child(server, theirs)
        theirs.close()
        atexit.register(self.stop)  # a diff that stops early does not wait for the child

    def policies(self) -> dict[str, Any]:
        document: dict[str, Any] = self._received()
        return document

    def compare(
        self, chunks: Iterable[bytes], old: diff.Order, new: diff.Order, everything: bool
    ) -> diff.Compared:
        for chunk in chunks:
            self.connection.send_bytes(chunk)
        self.connection.send_bytes(b"")  # the end of the new lines
        self.connection.send((old, new, everything))
        compared: diff.Compared = self._received()
        self.stop()
        return compared

    def _received(self) -> Any:
        try:
            failed, value = self.connection.recv()
        except EOFError:
            raise ControlError("the process reading the running server stopped") from None
        if failed:
            raise value
        return value

    def stop(self) -> None:
        """End the child (when still running) and reap it."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _child(server: str, connection: Connection) -> None:
    """Read the running server, compare, send what was found; exit, never returning into
    the caller's code. What fails is sent as (True, the exception)."""
    code = 1
    try:
        running = diff.read_running(server)
        connection.send((False, running.document))
        before = diff.Lines(running.lines)
        del running
        before.prepare()
        after = diff.Lines()
        after.add_text(iter(connection.recv_bytes, b""))
        old, new, everything = connection.recv()
        connection.send((False, diff.compare_lines(before, after, old, new, everything)))
        code = 0
    except EOFError:
        pass  # the diff stopped early
    except Exception as exc:
        try:
            connection.send((True, exc))
        except Exception:
            connection.send((True, ControlError(f"{type(exc).__name__}: {exc}")))
    finally:
        os._exit(code)
