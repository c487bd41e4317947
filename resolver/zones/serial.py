"""Serial number arithmetic (RFC 1982, SERIAL_BITS = 32): which SOA serial is newer."""

from __future__ import annotations

from resolver.zones.errors import SerialRangeError

HALF = 2**31
SERIAL_SPACE = 2**32


def serial_gt(a: int, b: int) -> bool:
    """``a`` is newer than ``b``; undefined pairs (exactly 2**31 apart) are neither."""
    return (a < b and b - a > HALF) or (a > b and a - b < HALF)


def serial_lt(a: int, b: int) -> bool:
    return serial_gt(b, a)


def serial_add(serial: int, n: int) -> int:
    """``serial + n`` (RFC 1982 3.1: ``n`` in 0 .. 2**31 - 1)."""
    if not 0 <= n < HALF:
        raise SerialRangeError("a serial can only be advanced by 0 to 2**31 - 1")
    return (serial + n) % SERIAL_SPACE
