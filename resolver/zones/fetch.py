"""One check of a zone against one primary, blocking (run in a thread): the primary's
SOA serial over UDP, then IXFR or AXFR over TCP when it is newer (RFC 1982), IXFR
falling back to AXFR when the primary cannot do it or sends a broken one; the result
written as the saved copy. Anything that fails changes nothing and raises
``TransferFailed``."""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsig

from resolver.core.endpoint import Endpoint
from resolver.core.errors import FormError
from resolver.sources.config_sections import ZoneConfig
from resolver.zones.errors import (
    BrokenTransfer,
    TransferCut,
    TransferError,
    TransferFailed,
    TransferTimeout,
    describe,
)
from resolver.zones.records import Records, Soa
from resolver.zones.serial import serial_gt
from resolver.zones.store import load_copy, write_copy
from resolver.zones.tsig import TsigChain, read_secret
from resolver.zones.xfr import Incoming, read_message

SOA_TIMEOUT = 2.0  # one SOA query over UDP (two tries)
XFR_TIMEOUT = 10.0  # the wait for each message of a transfer
XFR_LIFETIME = 900.0  # a whole transfer


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks = []
    while size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransferTimeout("timed out")
        sock.settimeout(min(left, XFR_TIMEOUT))
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise TransferCut("the primary closed the connection mid-transfer")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


@dataclass
class Checked:
    """The result of a successful check."""

    zone: Records | None  # the copy in memory, current (None: current, not read into memory)
    kind: str  # "none" (already current), "ixfr" or "axfr"
    soa: Soa
    records: int = 0
    seconds: float = 0.0
    ixfr_error: str = ""  # why an IXFR fell back to AXFR

    @property
    def serial(self) -> int:
        return self.soa.serial


def _fall_back(exc: BaseException) -> bool:
    """An IXFR failure an AXFR may not have: the primary cannot do IXFR or sent a bad one
    (not the network, not authentication)."""
    if isinstance(exc, TransferError):
        return exc.rcode != dns.rcode.NOTAUTH
    return isinstance(exc, BrokenTransfer | FormError) and "TSIG" not in str(exc)


class Fetcher:
    """Checks one zone against one primary and brings the copy up to date (blocking)."""

    def __init__(self, config: ZoneConfig, primary: Endpoint) -> None:
        self.config = config
        self.primary = primary
        self.origin = dns.name.from_text(config.name)
        self.key: dns.tsig.Key | None = None

    def _sign(self, message: dns.message.Message) -> None:
        if self.key is not None:
            message.use_tsig({self.key.name: self.key}, self.key.name, algorithm=self.key.algorithm)

    def primary_serial(self) -> int:
        query = dns.message.make_query(self.origin, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        self._sign(query)
        host, port = self.primary.host, self.primary.port
        response = None
        for attempt in range(2):
            try:
                response = dns.query.udp(query, host, SOA_TIMEOUT, port, ignore_unexpected=True)
                break
            except dns.exception.Timeout:
                if attempt:
                    raise
        assert response is not None
        if response.flags & dns.flags.TC:
            response = dns.query.tcp(query, host, SOA_TIMEOUT * 2, port)
        if response.rcode() != dns.rcode.NOERROR:
            raise TransferFailed(f"SOA query answered {dns.rcode.to_text(response.rcode())}")
        rrset = response.get_rrset(
            response.answer, self.origin, dns.rdataclass.IN, dns.rdatatype.SOA
        )
        if not rrset:
            raise TransferFailed("the primary's answer to the SOA query has no SOA")
        if not response.flags & dns.flags.AA:
            raise TransferFailed("the primary is not authoritative for the zone")
        return int(cast(dns.rdtypes.ANY.SOA.SOA, rrset[0]).serial)

    def transfer(self, base: Soa | None) -> Incoming:
        """AXFR (``base`` None) or IXFR from ``base`` over TCP: every message read, its
        TSIG checked, its records followed; nothing applied yet."""
        rdtype = dns.rdatatype.AXFR if base is None else dns.rdatatype.IXFR
        query = dns.message.make_query(self.origin, rdtype)
        query.flags &= ~dns.flags.RD
        if base is not None:
            query.authority.append(dns.rrset.from_text(self.origin, 0, "IN", "SOA", base.text))
        self._sign(query)
        data = query.to_wire()
        incoming = Incoming(self.config.name, base.serial if base is not None else None)
        chain = TsigChain(self.key, query.mac or b"")
        deadline = time.monotonic() + XFR_LIFETIME
        family = socket.AF_INET6 if ":" in self.primary.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(XFR_TIMEOUT)
            sock.connect((self.primary.host, self.primary.port))
            sock.sendall(struct.pack("!H", len(data)) + data)
            first = True
            while not incoming.done:
                size = struct.unpack("!H", _recv_exactly(sock, 2, deadline))[0]
                message = _recv_exactly(sock, size, deadline)
                received, tsig_start = read_message(message, query.id)
                rcode = message[3] & 0xF
                if rcode and tsig_start is None:
                    raise TransferError(rcode)  # an unsigned refusal changes nothing anyway
                chain.check(message, tsig_start, first)  # a TSIG error says more than NOTAUTH
                if rcode:
                    raise TransferError(rcode)
                first = False
                incoming.feed(received)
        if self.key is not None and not chain.last_signed:
            raise BrokenTransfer("missing TSIG on the last message")
        return incoming

    def check(self, copy: Records | None, saved: Soa | None) -> Checked:
        """Bring the copy up to date from this primary. ``saved``: the SOA of the copy on
        disk (None: there is none); ``copy``: that copy in memory, if it was read."""
        started = time.monotonic()
        try:
            if self.config.tsig is not None:
                self.key = read_secret(self.config.tsig)
            return self._check(copy, saved, started)
        except TransferFailed:
            raise
        except Exception as exc:
            raise TransferFailed(describe(exc)) from None

    def _axfr(self) -> Records:
        incoming = self.transfer(None)
        assert incoming.full is not None
        return incoming.full

    def _check(self, copy: Records | None, saved: Soa | None, started: float) -> Checked:
        if saved is None:
            return self._done(self._axfr(), "axfr", None, started, False, "")
        ours = saved.serial
        theirs = self.primary_serial()
        if theirs == ours:
            return Checked(copy, "none", saved)
        if not serial_gt(theirs, ours):
            raise TransferFailed(f"the primary's serial {theirs} is not newer than ours ({ours})")
        try:
            incoming = self.transfer(saved)
        except Exception as exc:
            if not _fall_back(exc):
                raise TransferFailed(f"IXFR: {describe(exc)}") from None
            return self._done(self._axfr(), "axfr", ours, started, False, describe(exc))
        if incoming.up_to_date:
            return Checked(copy, "none", saved)
        if incoming.full is not None:  # the primary sent the whole zone
            return self._done(incoming.full, "axfr", ours, started, False, "")
        if copy is None:  # read the copy only now that the differences need a base
            try:
                copy = load_copy(self.config)
            except Exception as exc:
                reason = f"the saved copy cannot be read ({describe(exc)})"
                return self._done(self._axfr(), "axfr", ours, started, False, reason)
            if copy is None or copy.soa is None or copy.soa.serial != ours:
                reason = "the saved copy changed on disk"
                return self._done(self._axfr(), "axfr", ours, started, False, reason)
        try:
            incoming.apply(copy)
        except BrokenTransfer as exc:
            return self._done(self._axfr(), "axfr", ours, started, False, str(exc))
        return self._done(copy, "ixfr", ours, started, True, "")

    def _done(
        self,
        zone: Records,
        kind: str,
        ours: int | None,
        started: float,
        dirty: bool,
        ixfr: str,
    ) -> Checked:
        """Check the result and write it; ``dirty``: it was applied to the copy in memory."""
        soa = zone.soa
        assert soa is not None
        if ours is not None and not serial_gt(soa.serial, ours):
            raise TransferFailed(
                f"the {kind.upper()} brought serial {soa.serial}, not newer than ours ({ours})",
                dirty=dirty,
            )
        try:
            write_copy(self.config, zone, self.primary, kind)
        except OSError as exc:
            raise TransferFailed(
                f"cannot write {self.config.file}: {exc.strerror}", dirty=dirty
            ) from None
        seconds = time.monotonic() - started
        return Checked(zone, kind, soa, len(zone), seconds, ixfr)
