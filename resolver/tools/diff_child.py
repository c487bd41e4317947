"""The running server's side of `sinkhole diff`, read and compared in a forked child.

Read in a thread, the million lines of GET /entries held the interpreter lock for most
of a second while the new files were built. A forked child has an interpreter of its
own: it reads the running server's policies and entries, and works out their names,
on the other core while this process builds the new files. The new lines go to it
through a pipe, a chunk at a time, in parts: the lines of the policy files' entries as
soon as the files are read (sent by a thread that mostly waits on the pipe, while the
files are compiled), then those of the list names and the zones once built. The child
cuts them into lines as they come, puts the parts back in entry_lines' order, compares
both sides and sends back only what changed (resolver.tools.diff.Compared).

What the child raises (the control endpoint could not be read) is sent back and raised
here, where the diff asks for what the child found.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Iterable, Sequence
from itertools import chain, filterfalse
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from operator import is_
from typing import Any

from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.snapshot import BuildResult
from resolver.tools import diff
from resolver.tools.control import ControlError, file_entry_lines, list_name_lines, zone_lines
from resolver.tools.diff_lines import Lines

PART = "part"  # a part of the new lines follows: its chunks, then b""
MESSAGE = 1 << 20
COMPARE = "compare"  # no more parts: (COMPARE, the parts' order, old, new, everything)


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
        self.sent: Sequence[PolicyFile] = ()  # the policy files whose entries were sent
        self.sending: threading.Thread | None = None
        atexit.register(self.stop)  # a diff that stops early does not wait for the child

    def send_entries(self, policies: Sequence[PolicyFile]) -> None:
        """Send the lines of the entries of ``policies`` (as read, before they are built),
        from a thread, while they are built; once, before compare."""

        def send() -> None:
            try:
                for policy in policies:
                    self._part(file_entry_lines(policy))
            except OSError:
                pass  # the child stopped: compare says so

        self.sent = policies
        self.sending = threading.Thread(target=send, name="diff-new-entries", daemon=True)
        self.sending.start()

    def policies(self) -> dict[str, Any]:
        document: dict[str, Any] = self._received()
        return document

    def compare(
        self, result: BuildResult, old: diff.Order, new: diff.Order, everything: bool
    ) -> diff.Compared:
        if self.sending is None:
            self.send_entries(result.policies)
        assert self.sending is not None
        self.sending.join()
        count = len(result.policies)
        sent = self.sent
        if len(sent) != count or not all(map(is_, sent, result.policies)):
            raise ValueError("the entries sent are not those of the policies built")
        # The parts, in the order sent: each file's entries, each policy's list names,
        # the zones; entry_lines has each file's entries then its list names.
        order = [part for i in range(count) for part in (i, count + i)] + [2 * count]
        try:
            for policy, report in zip(result.policies, result.reports, strict=True):
                self._part(list_name_lines(policy, report))
            self._part(zone_lines(result))
            self.connection.send((COMPARE, order, old, new, everything))
        except OSError:
            pass  # the child stopped: _received says so
        compared: diff.Compared = self._received()
        self.stop()
        return compared

    def _part(self, chunks: Iterable[bytes]) -> None:
        """One part of the new lines, in messages of about MESSAGE bytes: few enough that
        the sending thread seldom waits for the interpreter lock."""
        self.connection.send((PART,))
        batch: list[bytes] = []
        size = 0
        for chunk in chunks:
            batch.append(chunk)
            size += len(chunk)
            if size >= MESSAGE:
                self.connection.send_bytes(b"".join(batch))
                batch, size = [], 0
        if batch:
            self.connection.send_bytes(b"".join(batch))
        self.connection.send_bytes(b"")

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
        if self.sending is not None and self.sending.is_alive():
            # The diff stopped while the lines were sent: the thread's next write, to a
            # closed pipe, is to fail, not to end the process (SIGPIPE).
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        try:
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass


class _NewLines(Lines):
    """The new lines, told apart from the running server's as they come (while the files
    are compiled), not all at once at the end; ``unique`` is not kept (changes_from
    gives what compare_lines needs)."""

    def __init__(self, before: Lines) -> None:
        super().__init__()
        self.before = before
        self.added: set[bytes] = set()
        self.removed = set(before.unique)  # until a new line is the same

    def add(self, lines: list[bytes]) -> None:
        self.lines += lines
        self.added.update(filterfalse(self.before.unique.__contains__, lines))
        self.removed.difference_update(lines)

    def changes_from(self, before: Lines) -> tuple[set[bytes], set[bytes]]:
        if before is not self.before:
            return super().changes_from(before)
        return self.added, self.removed


def _child(server: str, connection: Connection) -> None:
    """Read the running server, compare, send what was found; exit, never returning into
    the caller's code. What fails is sent as (True, the exception)."""
    code = 1
    try:
        running = diff.read_running(server)
        connection.send((False, running.document))
        before = Lines(running.lines)
        del running
        before.prepare()
        after = _NewLines(before)
        ends = [0]  # where each part's lines end
        while (message := connection.recv())[0] == PART:
            after.add_text(iter(connection.recv_bytes, b""))
            ends.append(len(after.lines))
        _, order, old, new, everything = message
        if order != sorted(order):
            lines = after.lines
            after.lines = list(chain.from_iterable(lines[ends[i] : ends[i + 1]] for i in order))
        connection.send((False, diff.compare_lines(before, after, old, new, everything)))
        code = 0
    except EOFError:
        pass  # the diff stopped early
    except Exception as exc:
        try:
            connection.send((True, exc))
        except Exception:
            connection.send((True, ControlError(f"{type(exc).__name__}: {exc}")))
        try:  # what is still sent is read, until the diff stops: a write to a closed
            while True:  # pipe would end it at once, without a word (SIGPIPE)
                connection.recv_bytes()
        except (EOFError, OSError):
            pass
    finally:
        os._exit(code)
