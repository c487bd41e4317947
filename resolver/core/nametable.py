"""A name table laid out in one flat buffer, so several processes can map one copy of it.

Wire-form names (lower-cased, root-terminated) map to small integers (the index of an
outcome kept beside the table). The buffer holds a header, an open-addressing hash
table of 64-bit slots (linear probing, at most half full) and the names one after
another. A slot is ``offset << 32 | value << 8 | length``: the name's offset in the
buffer, its value and its length; 0 is an empty slot.

The slot of a name is found with Python's own ``hash`` of the name's bytes, which is
keyed per process (``PYTHONHASHSEED``): a table can only be read by a process whose hash
equals the builder's, so processes that share a table share the seed, and the header
carries a check value that a reader compares first. The keyed hash also means that
names crafted to collide (to make lookups slow) cannot be prepared in advance.

Pure: the buffer comes from the caller (bytes, or a memory-mapped file).
"""

from __future__ import annotations

import array
import struct
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import mmap

    Buffer = bytes | bytearray | mmap.mmap

MAGIC = b"SHNT0001"
HEADER = struct.Struct("=8sQQQQQ")  # magic, check, slot count, names, blob end, extra end
HEADER_SIZE = 64
MAX_VALUE = (1 << 24) - 1
MAX_LENGTH = 255
_CHECK_KEY = b"\x08sinkhole\x05check\x00"
_U64 = (1 << 64) - 1


class TableError(ValueError):
    """A buffer that is not a name table this process can read."""


def check_value() -> int:
    """This process's hash of a fixed name: equal in every process with the same seed."""
    return hash(_CHECK_KEY) & _U64


def pack(
    names: Collection[bytes], values: Iterable[int], count: int, extra: bytes = b""
) -> bytearray:
    """The buffer for ``count`` distinct ``names`` (read twice, in the same order) with
    their ``values``, followed by ``extra`` (any bytes the caller keeps with the table)."""
    size = 1 << max(4, (2 * count - 1).bit_length())
    mask = size - 1
    slots = array.array("Q", bytes(8 * size))
    start = HEADER_SIZE + 8 * size
    end = start
    if len(names) != count:
        raise TableError(f"{len(names)} names, not {count} as announced")
    if names and not 0 < min(map(len, names)) <= max(map(len, names)) <= MAX_LENGTH:
        raise TableError(f"a name longer than {MAX_LENGTH} bytes cannot be stored")
    for name, value in zip(names, values, strict=True):
        i = hash(name) & mask
        while slots[i]:
            i = (i + 1) & mask
        length = len(name)
        slots[i] = (end << 32) | (value << 8) | length
        end += length
    if end >= 1 << 32:
        raise TableError("the names take more than 4 GiB")
    out = bytearray(HEADER.pack(MAGIC, check_value(), size, count, end, end + len(extra)))
    out += bytes(HEADER_SIZE - len(out))
    out += slots.tobytes()
    del slots
    out += b"".join(names)
    if len(out) != end:
        raise TableError("the names changed while they were packed")
    out += extra
    return out


class NameTable:
    """Read access to a packed table in ``buffer`` (kept referenced while the table lives)."""

    __slots__ = ("buffer", "count", "extra", "keys", "length", "mask", "slots")

    def __init__(self, buffer: Buffer) -> None:
        view = memoryview(buffer)
        if len(view) < HEADER_SIZE:
            raise TableError("too short for a name table")
        magic, check, size, count, end, extra_end = HEADER.unpack_from(view)
        if magic != MAGIC:
            raise TableError("not a name table")
        if check != check_value():
            raise TableError("built by a process with another hash seed")
        if size & (size - 1) or len(view) < extra_end or end < HEADER_SIZE + 8 * size:
            raise TableError("a damaged name table")
        self.buffer = buffer
        self.keys = buffer  # slicing bytes or an mmap gives bytes: compared at C speed
        self.slots = view[HEADER_SIZE : HEADER_SIZE + 8 * size].cast("Q")
        self.mask = size - 1
        self.count = count
        self.extra = view[end:extra_end]
        self.length = extra_end  # where the table's buffer ends (what follows is the caller's)

    def get(self, name: bytes) -> int | None:
        """The value of ``name``, or None."""
        slots = self.slots
        mask = self.mask
        i = hash(name) & mask
        entry = slots[i]
        length = len(name)
        while entry:
            if entry & 0xFF == length:
                offset = entry >> 32
                if self.keys[offset : offset + length] == name:
                    return int((entry >> 8) & MAX_VALUE)
            i = (i + 1) & mask
            entry = slots[i]
        return None

    def __len__(self) -> int:
        return int(self.count)

    def items(self) -> Iterator[tuple[bytes, int]]:
        """Every (name, value), in slot order."""
        keys = self.keys
        for entry in self.slots:
            if entry:
                offset = entry >> 32
                yield bytes(keys[offset : offset + (entry & 0xFF)]), int((entry >> 8) & MAX_VALUE)
