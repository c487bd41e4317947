"""recvmmsg(2) and sendmmsg(2) through ctypes: many datagrams per system call.

The buffers of a batch are allocated once; ``Buffers`` lays out the datagram slots,
addresses, iovecs and mmsghdr arrays, ``ConnectedBatch`` reads and writes connected
sockets (the forwarder's upstream pool) with them. Linux only: ``batching_available``
says whether the calls exist. No ctypes callbacks are created (they need writable and
executable memory), so it runs under MemoryDenyWriteExecute=yes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import sys
from typing import Any

BATCH = 64  # datagrams per recvmmsg / sendmmsg
SLOT = 4096  # bytes per datagram buffer: a larger query is dropped (MSG_TRUNC)
ADDRESS_CACHE = 4096  # sockaddr bytes -> address tuple, cleared when full
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20

Address = tuple[Any, ...]


class _Iovec(ctypes.Structure):
    _fields_ = (("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint))


class _SockaddrIn6(ctypes.Structure):
    _fields_ = (
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_uint16),
        ("flowinfo", ctypes.c_uint32),
        ("addr", ctypes.c_ubyte * 16),
        ("scope_id", ctypes.c_uint32),
    )


NAME = ctypes.sizeof(_SockaddrIn6)  # room for sockaddr_in6 (and so for sockaddr_in)
_SIZE = ctypes.sizeof(ctypes.c_size_t)  # read through a view of "L": size_t is unsigned long
HDR_SIZE = ctypes.sizeof(_Mmsghdr)
_IOV = ctypes.sizeof(_Iovec)


def _load() -> tuple[Any, Any] | None:
    """libc's recvmmsg and sendmmsg, or None where they do not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p)
    recv.restype = ctypes.c_int
    send.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
    send.restype = ctypes.c_int
    return recv, send


CALLS = _load()


def batching_available() -> bool:
    """Whether this platform has recvmmsg and sendmmsg."""
    return CALLS is not None


def sockaddr_to_address(raw: bytes) -> Address | None:
    """A kernel sockaddr_in / sockaddr_in6 as Python's socket module writes addresses:
    (host, port) or (host, port, flowinfo, scope_id); None for another family."""
    if len(raw) < 2:
        return None
    family = int.from_bytes(raw[:2], sys.byteorder)
    if family == socket.AF_INET and len(raw) >= 8:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET6 and len(raw) >= 28:
        return (
            socket.inet_ntop(socket.AF_INET6, raw[8:24]),
            int.from_bytes(raw[2:4], "big"),
            int.from_bytes(raw[4:8], "big"),
            int.from_bytes(raw[24:28], sys.byteorder),
        )
    return None


def address_to_sockaddr(address: Address) -> bytes | None:
    """The kernel sockaddr for an address tuple as Python's socket module writes it
    (the inverse of sockaddr_to_address); None when it is not one."""
    try:
        host: str = address[0].split("%", 1)[0]
        port: int = address[1]
        if len(address) == 2:
            return (
                _FAMILY4
                + port.to_bytes(2, "big")
                + socket.inet_pton(socket.AF_INET, host)
                + bytes(8)
            )
        flowinfo: int = address[2]
        scope_id: int = address[3]
        return (
            _FAMILY6
            + port.to_bytes(2, "big")
            + flowinfo.to_bytes(4, "big")
            + socket.inet_pton(socket.AF_INET6, host)
            + scope_id.to_bytes(4, sys.byteorder)
        )
    except (OSError, ValueError, TypeError, IndexError, AttributeError, OverflowError):
        return None


_FAMILY4 = socket.AF_INET.to_bytes(2, sys.byteorder)
_FAMILY6 = socket.AF_INET6.to_bytes(2, sys.byteorder)


class AddressCache:
    """Sockaddr bytes to address tuples and back, bounded: most traffic comes from few
    clients."""

    __slots__ = ("limit", "raws", "seen")

    def __init__(self, limit: int = ADDRESS_CACHE) -> None:
        self.limit = limit
        self.seen: dict[bytes, Address | None] = {}
        self.raws: dict[Address, bytes | None] = {}

    def get(self, raw: bytes) -> Address | None:
        try:
            return self.seen[raw]
        except KeyError:
            pass
        found = sockaddr_to_address(raw)
        if len(self.seen) >= self.limit:
            self.seen.clear()
        self.seen[raw] = found
        return found

    def raw(self, address: Address) -> bytes | None:
        """The sockaddr bytes of ``address``."""
        try:
            return self.raws[address]
        except KeyError:
            pass
        found = address_to_sockaddr(address)
        if len(self.raws) >= self.limit:
            self.raws.clear()
        self.raws[address] = found
        return found


class Buffers:
    """The batch's memory, allocated once: datagram slots in and out, address slots,
    iovecs and two mmsghdr arrays.

    Header i of either array names address slot i: a reply staged at position j is
    sent to the address in slot j (copied there from slot i when j < i, that is when
    earlier datagrams of the batch got no immediate reply). Address lengths are fixed
    by the socket's family, so the kernel never shrinks them between calls.
    """

    def __init__(
        self,
        family: int,
        count: int = BATCH,
        slot: int = SLOT,
        named: bool = True,
        out_slot: int | None = None,
    ) -> None:
        self.count = count
        self.slot = slot  # bytes per datagram read
        self.out_slot = out_slot or slot  # bytes per datagram sent
        # A connected socket's datagrams carry no address (msg_name NULL).
        self.namelen = 0 if not named else 16 if family == socket.AF_INET else NAME
        self.data = (ctypes.c_char * (count * slot))()
        self.out = (ctypes.c_char * (count * self.out_slot))()
        self.names = (ctypes.c_char * (count * NAME))()
        self.recv_iov = (_Iovec * count)()
        self.send_iov = (_Iovec * count)()
        self.recv = (_Mmsghdr * count)()
        self.send = (_Mmsghdr * count)()
        data_at, out_at = ctypes.addressof(self.data), ctypes.addressof(self.out)
        names_at = ctypes.addressof(self.names)
        for i in range(count):
            self.recv_iov[i].iov_base = data_at + i * slot
            self.recv_iov[i].iov_len = slot
            self.send_iov[i].iov_base = out_at + i * self.out_slot
            for hdr, iov in (
                (self.recv[i].msg_hdr, self.recv_iov),
                (self.send[i].msg_hdr, self.send_iov),
            ):
                hdr.msg_name = names_at + i * NAME if named else None
                hdr.msg_namelen = self.namelen
                hdr.msg_iov = ctypes.addressof(iov) + i * _IOV
                hdr.msg_iovlen = 1
        self.recv_at = ctypes.addressof(self.recv)
        self.send_at = ctypes.addressof(self.send)
        self.data_view = memoryview(self.data).cast("B")
        self.out_view = memoryview(self.out).cast("B")
        self.names_view = memoryview(self.names).cast("B")
        # Strided views: element i is datagram i's msg_len, msg_flags; reply j's iov_len.
        recv_u32 = memoryview(self.recv).cast("B").cast("I")
        hdr_u32 = HDR_SIZE // 4
        self.lengths = recv_u32[_Mmsghdr.msg_len.offset // 4 :: hdr_u32]
        self.flags = recv_u32[_Msghdr.msg_flags.offset // 4 :: hdr_u32]
        self.reply_lengths = (
            memoryview(self.send_iov)
            .cast("B")
            .cast("L")[_Iovec.iov_len.offset // _SIZE :: _IOV // _SIZE]
        )

    def staged(self, j: int) -> tuple[bytes, bytes]:
        """Send header j's reply and sockaddr bytes, copied out."""
        start, name = j * self.out_slot, j * NAME
        reply = bytes(self.out_view[start : start + self.reply_lengths[j]])
        return reply, bytes(self.names_view[name : name + self.namelen])


class ConnectedBatch:
    """Batch reads and writes on connected UDP sockets (the forwarder's upstream pool).

    One instance serves every socket of a process: callbacks never overlap, and every
    datagram read is copied out before the next call.
    """

    def __init__(self, count: int = BATCH, slot: int = SLOT, out_slot: int = SLOT) -> None:
        if CALLS is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available here")
        self.buffers = Buffers(socket.AF_INET, count, slot, named=False, out_slot=out_slot)
        self._recvmmsg, self._sendmmsg = CALLS

    def receive(self, fd: int) -> list[bytes]:
        """The datagrams waiting on ``fd`` (at most one batch); [] when none. A socket
        error (an ICMP error reported on a connected socket) raises OSError. Datagrams
        larger than a slot are left out."""
        b = self.buffers
        n: int = self._recvmmsg(fd, b.recv_at, b.count, MSG_DONTWAIT, None)
        if n < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return []
            raise OSError(code, os.strerror(code))
        slot, view, flags = b.slot, b.data_view, b.flags
        return [
            view[i * slot : i * slot + length].tobytes()
            for i, length in enumerate(b.lengths[:n].tolist())
            if not flags[i] & MSG_TRUNC
        ]

    def send(self, fd: int, datagrams: list[bytes]) -> int:
        """Send ``datagrams`` (each at most ``out_slot`` bytes) in as few calls as the
        kernel allows; how many went out. The rest could not be sent now (full buffer,
        socket error)."""
        b = self.buffers
        slot, out, lengths = b.out_slot, b.out_view, b.reply_lengths
        total = 0
        while total < len(datagrams):
            chunk = datagrams[total : total + b.count]
            for j, datagram in enumerate(chunk):
                out[j * slot : j * slot + len(datagram)] = datagram
                lengths[j] = len(datagram)
            done = 0
            while done < len(chunk):
                sent: int = self._sendmmsg(fd, b.send_at + done * HDR_SIZE, len(chunk) - done, 0)
                if sent > 0:
                    done += sent
                elif sent < 0 and ctypes.get_errno() == errno.EINTR:
                    continue
                else:
                    return total + done
            total += done
        return total
