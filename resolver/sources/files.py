"""Files people give the resolver (configuration, policies, lists, zones), opened one way.

Only regular files are read. A FIFO, socket, device or directory is refused before a
byte is read (reading a FIFO can block forever): the path is checked with ``stat``,
opened non-blocking, and checked again on the open descriptor, so a file swapped in
between is caught too. Symbolic links are followed; a loop is reported as one.

``.gz``, ``.xz`` and ``.bz2`` files are decompressed as they are read. What is read is
capped after decompression: a file larger than the cap, or a decompression bomb,
stops with an error at the cap, in bounded memory. Text is UTF-8 unless said
otherwise; a bad byte is reported with its line and column. Every error is a
``SourceError`` (the caller's subclass) naming the file.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import lzma
import os
import stat
import zlib
from collections.abc import Callable
from pathlib import Path

from resolver.core.errors import SourceError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
DEFAULT_MAX_SIZE = 512 * MiB  # lists and zone files (``max_file_size`` in the configuration)
MAX_YAML_SIZE = 16 * MiB  # the configuration and policy files
BUFFER_SIZE = 1 << 16

ErrorType = Callable[[str, str, int, int], SourceError]
_DECOMPRESSORS: dict[str, Callable[[io.FileIO], io.BufferedIOBase]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, "rb"),  # noqa: SIM115 - closed by _Capped
    ".bz2": lambda raw: bz2.BZ2File(raw, "rb"),
}
_FORMATS = {".gz": "gzip", ".xz": "xz", ".bz2": "bzip2"}
_DECOMPRESS_ERRORS = (EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile)
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def size_text(size: int) -> str:
    """A byte count as people read it: 512 MiB, 1.5 GiB, 300 KiB, 12 bytes."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size >= unit:
            value = size / unit
            return f"{value:.0f} {name}" if value == int(value) else f"{value:.1f} {name}"
    return f"{size} bytes"


def os_reason(exc: OSError) -> str:
    """Why opening or reading a file failed, in words."""
    code = exc.errno
    if code == errno.ENOENT:
        return "it does not exist"
    if code == errno.ELOOP:
        return "its symbolic links form a loop (or are nested too deeply)"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if code == errno.ENOTDIR:
        return "a part of its path is not a directory"
    if code == errno.EISDIR:
        return "it is a directory, not a file"
    if code == errno.ENAMETOOLONG:
        return "its name is too long"
    return exc.strerror or str(exc)


def kind_problem(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "it is a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "it is a FIFO (named pipe), not a regular file; it is not read, as that can block"
    if stat.S_ISSOCK(mode):
        return "it is a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "it is a device, not a regular file"
    return "it is not a regular file"


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file (missing, a directory, a FIFO...), or None."""
    try:
        return kind_problem(os.stat(path).st_mode)
    except OSError as exc:
        return os_reason(exc)
    except ValueError:  # a NUL byte in the name
        return "its name is not a valid file name"


def _open_regular(path: Path, what: str, error: ErrorType) -> tuple[int, int]:
    """A descriptor of ``path`` opened for reading, and its size; only a regular file."""
    source = str(path)
    problem = file_problem(path)
    if problem is not None:
        raise error(f"cannot read the {what}: {problem}", source, 0, 0)
    try:
        fd = os.open(path, _FLAGS)  # O_NONBLOCK: a FIFO swapped in after the stat never blocks
    except OSError as exc:
        raise error(f"cannot read the {what}: {os_reason(exc)}", source, 0, 0) from None
    try:
        info = os.fstat(fd)
        problem = kind_problem(info.st_mode)
        if problem is not None:
            raise error(f"cannot read the {what}: {problem}", source, 0, 0)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


class _Capped(io.RawIOBase):
    """A file's bytes, decompressed, that end in an error past ``limit`` bytes."""

    def __init__(
        self,
        raw: io.FileIO,
        inner: io.BufferedIOBase | io.FileIO,
        source: str,
        what: str,
        limit: int,
        setting: str,
        error: ErrorType,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._inner = inner
        self._source = source
        self._what = what
        self._limit = limit
        self._setting = setting
        self._error = error
        self._total = 0
        self._compressed = inner is not raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        # One byte past the cap, to tell a file of exactly the cap from a larger one.
        want = min(len(view), self._limit - self._total + 1)
        try:
            data = self._inner.read(want) or b""
        except _DECOMPRESS_ERRORS as exc:
            raise self._fail(self._corrupt(exc)) from None
        except OSError as exc:
            if self._compressed and exc.errno is None:  # bz2: "Invalid data stream"
                raise self._fail(self._corrupt(exc)) from None
            raise self._fail(f"cannot read the {self._what}: {os_reason(exc)}") from None
        count = len(data)
        self._total += count
        if self._total > self._limit:
            raise self._fail(too_big(self._what, self._limit, self._setting, self._compressed))
        view[:count] = data
        return count

    def _corrupt(self, exc: Exception) -> str:
        kind = _FORMATS.get(Path(self._source).suffix.lower(), "compressed")
        return f"cannot read the {self._what}: not valid {kind} data ({exc})"

    def _fail(self, message: str) -> SourceError:
        return self._error(message, self._source, 0, 0)

    def close(self) -> None:
        if not self.closed:
            try:
                if self._inner is not self._raw:
                    self._inner.close()
            finally:
                self._raw.close()
        super().close()


def too_big(what: str, limit: int, setting: str = "", compressed: bool = False) -> str:
    after = " after decompression" if compressed else ""
    how = f" ({setting} in the configuration)" if setting else ""
    return f"the {what} is larger than {size_text(limit)}{after}, the limit{how}"


def open_binary(
    path: Path,
    what: str = "file",
    limit: int = DEFAULT_MAX_SIZE,
    error: ErrorType = SourceError,
    setting: str = "",
) -> io.BufferedReader:
    """A user file's bytes, decompressed by its suffix, at most ``limit`` of them.

    ``what`` names the file in errors ("list", "zone file"); ``setting`` names the
    configuration key that sets ``limit``, if one does. Errors are ``error(message,
    file, line, column)``, raised on opening or while reading.
    """
    source = str(path)
    fd, size = _open_regular(path, what, error)
    raw = io.FileIO(fd, "rb", closefd=True)
    opener = _DECOMPRESSORS.get(path.suffix.lower())
    if opener is None and size > limit:
        raw.close()
        raise error(too_big(what, limit, setting), source, 0, 0)
    inner = raw if opener is None else opener(raw)
    capped = _Capped(raw, inner, source, what, limit, setting, error)
    return io.BufferedReader(capped, BUFFER_SIZE)


def read_bytes(
    path: Path,
    what: str = "file",
    limit: int = DEFAULT_MAX_SIZE,
    error: ErrorType = SourceError,
    setting: str = "",
) -> bytes:
    """A user file's whole content (see ``open_binary``)."""
    with open_binary(path, what, limit, error, setting) as f:
        return f.read()


def decode(raw: bytes, source: str, error: ErrorType = SourceError, hint: str = "") -> str:
    """UTF-8 text; a bad byte is an error at its line and column (in characters)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, start) + 1
        column = len(raw[start : exc.start].decode("utf-8")) + 1
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8{hint}"
        raise error(message, source, line, column) from None


def read_text(
    path: Path,
    what: str = "file",
    limit: int = DEFAULT_MAX_SIZE,
    error: ErrorType = SourceError,
    setting: str = "",
) -> str:
    """A user file's text, UTF-8 (see ``open_binary`` and ``decode``)."""
    return decode(read_bytes(path, what, limit, error, setting), str(path), error)
