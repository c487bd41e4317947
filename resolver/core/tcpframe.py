"""DNS over TCP framing (RFC 1035 4.2.2, RFC 7766): a 2-octet length before each message."""

from __future__ import annotations

import struct

_LEN = struct.Struct("!H")


def frame(message: bytes) -> bytes:
    return _LEN.pack(len(message)) + message


class Framer:
    """Splits a byte stream into messages; holds at most one partial message."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        if self._buffer:
            self._buffer += data  # amortised: no quadratic copying for byte-by-byte input
            buffer: bytes | bytearray = self._buffer
        else:
            buffer = data
        messages = []
        pos = 0
        end = len(buffer)
        while end - pos >= 2:
            size = (buffer[pos] << 8) | buffer[pos + 1]
            if end - pos - 2 < size:
                break
            messages.append(bytes(buffer[pos + 2 : pos + 2 + size]))
            pos += 2 + size
        if buffer is self._buffer:
            del self._buffer[:pos]
        elif pos < end:
            self._buffer = bytearray(buffer[pos:])
        return messages

    @property
    def pending(self) -> int:
        """Octets of an incomplete message waiting for more data."""
        return len(self._buffer)
