"""systemd's notify protocol (sd_notify): a datagram to $NOTIFY_SOCKET, nothing more."""

from __future__ import annotations

import os
import socket
import time


def notify(*states: str) -> bool:
    """Send ``KEY=VALUE`` lines to systemd; False (and no error) when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError:
        return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1", f"STATUS={status}") if status else notify("READY=1")


def reloading() -> bool:
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={usec}")


def stopping() -> bool:
    return notify("STOPPING=1")
