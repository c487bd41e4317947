"""A lone server's reload built in a child process, so that serving never waits for it.

Built in a thread, a reload shares the interpreter lock with the event loop: a 100,000-
name list held every query up for tens of milliseconds at a time while it was read,
compiled and packed. A forked child has its own interpreter: it builds, counts the names
each policy gained and lost, and writes the policy image (resolver.sources.shared);
the server maps it, as a supervisor's workers map the image its builder writes. A fork
shares this process's hash seed, which the image's name table depends on, and inherits
the configuration and the policy in force without being told them. The memory the build
needs is the child's and goes back to the system when it exits.

A build that fails sends its exception back through a pipe, and the server reports it as
it reports any failed reload.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal
from pathlib import Path

from resolver.core.errors import SourceError
from resolver.core.nametable import TableError
from resolver.service.builder import build_image
from resolver.service.reloads import Changes, mapped
from resolver.sources.config import Config
from resolver.sources.snapshot import BuildResult

IMAGE = "policy.image"


def fork_available() -> bool:
    return hasattr(os, "fork")


async def build_in_child(
    config: Config, previous: BuildResult | None, folder: Path
) -> tuple[BuildResult, Changes]:
    """Build ``config`` in a forked child that writes the image into ``folder``; the
    result mapped, and the names gained and lost since ``previous``. Raises what the
    build raised (SourceError, OSError, TableError)."""
    image = folder / IMAGE
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: measured through the server's reloads
        os.close(read_end)
        _child(config, previous, image, write_end)
    os.close(write_end)
    try:
        failure = await _read_all(read_end)
    except BaseException:  # cancelled (the server stops): the build is not waited for
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    if failure:
        raise pickle.loads(failure)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError(f"the policy build process ended with status {status}")
    return await asyncio.to_thread(mapped, image)


def _child(config: Config, previous: BuildResult | None, image: Path, out: int) -> None:
    """Build, write the image, and exit: 0 with nothing written on success, else 1 with
    the pickled exception. Never returns into the server's code."""
    code = 1
    payload = b""
    try:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)  # the event loop's: the server's, not ours
        gc.disable()  # short-lived; and a collection would copy every page it touches
        build_image(config, image, previous)
        code = 0
    except BaseException as exc:
        payload = _pickled(exc)
    finally:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(out, view) :]
        finally:
            os._exit(code)


def _pickled(exc: BaseException) -> bytes:
    """``exc`` pickled, or an equivalent the server can read."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        if isinstance(exc, SourceError):
            plain = SourceError(exc.message, exc.source, exc.line, exc.column)
            return pickle.dumps(plain)
        kind = TableError if isinstance(exc, TableError) else OSError
        return pickle.dumps(kind(f"{type(exc).__name__}: {exc}"))


async def _read_all(fd: int) -> bytes:
    """Everything written to the pipe ``fd`` until its other end closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    try:
        return await reader.read()
    finally:
        transport.close()
