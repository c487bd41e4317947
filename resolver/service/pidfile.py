"""The pid file: how ``sinkhole reload`` finds the running server.

The server holds its pid file open with an exclusive lock (flock) from start to stop,
and writes two lines into it: its process id and the configuration it serves. A file
whose lock nobody holds was left by a server that is gone (killed, say), so a reused
process id is never signalled. A second server given the same file runs without one.

Where it is, unless ``pid_file:`` says: ``$RUNTIME_DIRECTORY/sinkhole.pid`` under
systemd (``RuntimeDirectory=sinkhole``), ``/run/sinkhole/sinkhole.pid`` for root,
``$XDG_RUNTIME_DIR/sinkhole/sinkhole.pid`` for anyone else, or a directory of the
user's own in the temporary directory when there is no XDG_RUNTIME_DIR.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resolver.sources.config import Config

FILE_NAME = "sinkhole.pid"
BUILT_IN = "<built-in default>"  # what the file says of a server started without --config
READ_PATIENCE = 1.0  # seconds to wait for a server that has locked its file but not written it


class PidFileError(Exception):
    """The pid file cannot be taken: held by another server, or not writable."""

    def __init__(self, path: Path, reason: str, holder: int | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.holder = holder


def default_path(env: Mapping[str, str] | None = None, euid: int | None = None) -> Path:
    """Where the pid file is when the configuration does not say."""
    env = os.environ if env is None else env
    euid = os.geteuid() if euid is None else euid
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / FILE_NAME
    if euid == 0:
        return Path("/run/sinkhole") / FILE_NAME
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg:
        return Path(xdg) / "sinkhole" / FILE_NAME
    return Path(tempfile.gettempdir()) / f"sinkhole-{euid}" / FILE_NAME


def path_of(config: Config) -> Path | None:
    """The pid file of a server with ``config``; None with ``pid_file: false``."""
    if config.pid_file is True:
        return default_path()
    if config.pid_file is False:
        return None
    return config.pid_file


def hold(config: Config, config_path: Path | None, log: Any) -> PidFile | None:
    """The pid file for a server starting with ``config``; None (with a warning) when it
    has none. PidFileError when the file ``pid_file:`` names cannot be written."""
    where = path_of(config)
    if where is None:
        return None
    try:
        return PidFile.take(where, str(config_path) if config_path else BUILT_IN)
    except PidFileError as exc:
        if exc.holder is not None:
            log.warning(
                "pid_file_in_use",
                pid_file=str(where),
                holder=exc.holder,
                detail="`sinkhole reload` reaches that server, not this one; "
                "give each server its own pid_file:",
            )
            return None
        if config.pid_file is not True:
            raise
        log.warning(
            "pid_file_unavailable",
            pid_file=str(where),
            error=exc.reason,
            detail="`sinkhole reload` cannot find this server; set pid_file: to a "
            "writable path, or false",
        )
        return None


@dataclass(frozen=True, slots=True)
class Holder:
    """The server that holds a pid file."""

    pid: int
    config: str  # the configuration file it serves (absolute), or BUILT_IN


class PidFile:
    """A pid file this process holds; ``release`` removes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path, config: str) -> PidFile:
        """Create or take over ``path`` for this process, serving ``config``."""
        _make_directory(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PidFileError(path, exc.strerror or str(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise PidFileError(
                path, "another server holds it", holder.pid if holder else None
            ) from None
        except OSError as exc:
            os.close(fd)
            raise PidFileError(path, exc.strerror or str(exc)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{config}\n".encode(), 0)
        os.fchmod(fd, 0o644)  # `sinkhole reload` run by another user of the group can read it
        return cls(path, fd)

    def release(self) -> None:
        """Remove the file (if it is still ours) and let go of the lock."""
        if self._fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def find(path: Path) -> Holder | None:
    """The running server that holds ``path``; None when the file is missing or was left
    by a server that is gone. OSError when the file cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        deadline = time.monotonic() + READ_PATIENCE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)  # locked: a server is running
                if holder is not None or time.monotonic() >= deadline:
                    return holder
                time.sleep(0.02)  # it has locked the file and is about to write it
                continue
            return None  # nobody holds the lock: the server that wrote it is gone
    finally:
        os.close(fd)


def _read(fd: int) -> Holder | None:
    text = os.pread(fd, 8192, 0).decode("utf-8", "replace")
    pid, _, rest = text.partition("\n")
    if not pid.strip().isdigit():
        return None
    return Holder(int(pid), rest.strip() or BUILT_IN)


def _make_directory(path: Path) -> None:
    """The pid file's directory, made if missing; in a shared temporary directory, one of
    our own that nobody else can write (not a symbolic link someone planted)."""
    folder = path.parent
    shared = folder.parent == Path(tempfile.gettempdir())
    try:
        folder.mkdir(mode=0o700 if shared else 0o755, parents=not shared, exist_ok=True)
    except OSError as exc:
        raise PidFileError(path, exc.strerror or str(exc)) from None
    if shared:
        info = os.lstat(folder)
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise PidFileError(path, "its directory is not this user's own")
