"""Follow RPZ primaries as a secondary: SOA checks, IXFR and AXFR, the local copy, expiry.

For every zone with ``primaries`` the local copy (the zone's ``file``) is kept up to
date as RFC 1034, 1995 and 1996 describe: a check at start-up (IXFR from the saved
serial, AXFR without a copy), then on the SOA refresh timer, after a failure on the
SOA retry timer, and at once on a NOTIFY from a listed primary. A check asks the
SOA first and transfers only when the primary's serial is newer (RFC 1982); IXFR
falls back to AXFR when the primary cannot do it or sends a broken one. A transfer
is applied atomically (temporary file, fsync, rename) and then ``on_change`` makes
the policy reload; anything broken, unauthenticated or out of order changes
nothing and is logged. Past the SOA expire time without a successful check the
zone is kept (and an error is logged periodically) or, with ``on_expire: drop``,
its copy is moved aside to ``<file>.expired`` so it is no longer enforced.

The copy's modification time records the last successful check (it is touched when
the primary has nothing new), so expiry survives restarts, as with BIND.

Transfers are read from the wire here (records kept as text, keyed for IXFR's exact
deletes; TSIG checked with dnspython), some twenty times faster than through
dnspython's zone objects: 140,000 records in about three seconds. Each check is
blocking network I/O in a daemon thread, so start-up, shutdown and the event loop
never wait for a primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import lzma
import os
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.tsig
import dns.zone

from resolver.core import wire
from resolver.core.endpoint import Endpoint
from resolver.core.errors import FormError
from resolver.sources.config import ZoneConfig
from resolver.zones.notify import NotifyGate, read_secret

SOA_TIMEOUT = 2.0  # one SOA query over UDP (two tries)
XFR_TIMEOUT = 10.0  # the wait for each message of a transfer
XFR_LIFETIME = 900.0  # a whole transfer
NO_COPY_RETRY = 10.0  # the retry interval while there is no copy (no SOA to read it from)
MIN_INTERVAL = 5.0  # SOA refresh and retry are clamped to [MIN_INTERVAL, MAX_INTERVAL]
MAX_INTERVAL = 28 * 86400.0
EXPIRED_REMINDER = 600.0  # how often an expired zone is logged again
REFUSED_LOG_BURST = 20  # refused NOTIFYs logged per window (the rest are counted)
REFUSED_LOG_WINDOW = 60.0
HALF = 2**31
SERIAL_SPACE = 2**32

T = TypeVar("T")


# --- serial number arithmetic (RFC 1982, SERIAL_BITS = 32) ---------------------------


def serial_gt(a: int, b: int) -> bool:
    """``a`` is newer than ``b``; undefined pairs (exactly 2**31 apart) are neither."""
    return (a < b and b - a > HALF) or (a > b and a - b < HALF)


def serial_lt(a: int, b: int) -> bool:
    return serial_gt(b, a)


def serial_add(serial: int, n: int) -> int:
    """``serial + n`` (RFC 1982 3.1: ``n`` in 0 .. 2**31 - 1)."""
    if not 0 <= n < HALF:
        raise ValueError("a serial can only be advanced by 0 to 2**31 - 1")
    return (serial + n) % SERIAL_SPACE


# --- timers (pure, with the clock passed in) -------------------------------------------


@dataclass(frozen=True, slots=True)
class Timers:
    """The SOA's refresh, retry and expire, in seconds."""

    refresh: float
    retry: float
    expire: float

    @classmethod
    def of(cls, soa: SoaLike) -> Timers:
        def clamp(value: int) -> float:
            return min(max(float(value), MIN_INTERVAL), MAX_INTERVAL)

        return cls(clamp(soa.refresh), clamp(soa.retry), max(float(soa.expire), MIN_INTERVAL))


class ZoneClock:
    """When to check the primary next, and whether the copy has expired.

    ``confirmed`` is when the copy was last known to be current (a transfer, or the
    primary answering with the same serial); None without a copy.
    """

    def __init__(
        self,
        timers: Timers | None,
        confirmed: float | None,
        now: float,
        reminder: float = EXPIRED_REMINDER,
    ) -> None:
        self.timers = timers
        self.confirmed = confirmed
        self.next_check = now  # the first check is at once
        self.failures = 0
        self.expired = False
        self.reminded: float | None = None
        self.reminder = reminder

    def expires_at(self) -> float | None:
        if self.timers is None or self.confirmed is None:
            return None
        return self.confirmed + self.timers.expire

    def check_due(self, now: float) -> bool:
        return now >= self.next_check

    def succeeded(self, now: float, timers: Timers) -> bool:
        """A check found the copy current (or made it so). Returns whether it had expired."""
        was_expired = self.expired
        self.timers = timers
        self.confirmed = now
        self.next_check = now + timers.refresh
        self.failures = 0
        self.expired = False
        self.reminded = None
        return was_expired

    def failed(self, now: float) -> None:
        """No primary gave a good answer: try again after the SOA retry interval."""
        self.failures += 1
        self.next_check = now + (self.timers.retry if self.timers else NO_COPY_RETRY)

    def poll_expiry(self, now: float) -> str | None:
        """``"expired"`` the first time the copy is past its expire time, ``"reminder"`` every
        ``reminder`` seconds after that, else None."""
        deadline = self.expires_at()
        if deadline is None or now < deadline:
            return None
        if not self.expired:
            self.expired = True
            self.reminded = now
            return "expired"
        if self.reminded is not None and now - self.reminded >= self.reminder:
            self.reminded = now
            return "reminder"
        return None

    def forget(self) -> None:
        """The copy is gone (dropped): nothing left to expire; keep checking on retry."""
        self.confirmed = None
        self.expired = False
        self.reminded = None

    def wake_at(self) -> float:
        """The next moment something is due: a check, the expiry, or an expiry reminder."""
        moments = [self.next_check]
        deadline = self.expires_at()
        if deadline is not None:
            if not self.expired:
                moments.append(deadline)
            elif self.reminded is not None:
                moments.append(self.reminded + self.reminder)
        return min(moments)


# --- the copy on disk ----------------------------------------------------------------------


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, all or nothing: a temporary file in the same
    directory, written and fsynced, renamed over ``path``, then the directory fsynced.
    On any error ``path`` is unchanged and the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


# --- a zone's records ----------------------------------------------------------------------


class SoaLike(Protocol):
    @property
    def refresh(self) -> int: ...
    @property
    def retry(self) -> int: ...
    @property
    def expire(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Soa:
    """An SOA record's fields, and its rdata as master-file text."""

    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int
    text: str

    @classmethod
    def parse(cls, text: str) -> Soa:
        """From rdata text ``mname rname serial refresh retry expire minimum`` (numbers
        only, as written here); dnspython reads anything else."""
        fields = text.split()
        if len(fields) == 7 and all(f.isdigit() for f in fields[2:]):
            serial, refresh, retry, expire, minimum = (int(f) for f in fields[2:])
            return cls(serial, refresh, retry, expire, minimum, " ".join(fields))
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SOA, text)
        return cls.of(cast(dns.rdtypes.ANY.SOA.SOA, rdata))

    @classmethod
    def of(cls, rdata: dns.rdtypes.ANY.SOA.SOA) -> Soa:
        raw = rdata.to_wire() or b""
        return _soa_from_wire(raw, 0, len(raw))


Record = tuple[str, int, str]  # owner, type, rdata as text: one record of a zone


class Records:
    """A zone held for transfers: each record once, keyed by owner (lower-case absolute
    text), type and rdata (master-file text, names in lower case), with its TTL. Far
    lighter than a dnspython zone, and what an IXFR needs: exact deletes and adds."""

    __slots__ = ("origin", "records", "soa", "soa_ttl")

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.soa: Soa | None = None
        self.soa_ttl = 0
        self.records: dict[Record, int] = {}

    def __len__(self) -> int:
        return len(self.records) + (self.soa is not None)

    def text(self, header: str) -> str:
        """A master file: absolute names, one record a line, the SOA first."""
        assert self.soa is not None
        origin = self.origin
        lines = [header, f"$ORIGIN {origin}\n", f"{origin} {self.soa_ttl} IN SOA {self.soa.text}\n"]
        names = _TYPE_NAMES
        lines.extend(
            f"{owner} {ttl} IN {names.get(rtype) or _type_name(rtype)} {rdata}\n"
            for (owner, rtype, rdata), ttl in self.records.items()
        )
        return "".join(lines)


HEADER_MARK = "; sinkhole: "  # the first line of every copy written here
_TYPE_NAMES: dict[int, str] = {}
_TYPE_CODES: dict[str, int] = {}


def _type_name(rtype: int) -> str:
    name = _TYPE_NAMES[rtype] = dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rtype))
    return name


def _type_code(name: str) -> int:
    code = _TYPE_CODES.get(name)
    if code is None:
        code = _TYPE_CODES[name] = int(dns.rdatatype.from_text(name))
    return code


# Master-file text of names and rdata, from wire form. The same function writes every
# copy and reads every transfer, so a record deleted by an IXFR is found by its text.

_SAFE = bytes(c for c in range(0x21, 0x7F) if c not in b'"().;\\@$')
_SAFE_SET = frozenset(_SAFE)


def _label_text(label: bytes) -> str:
    if not label.translate(None, _SAFE):
        return label.decode("ascii")
    return "".join(
        chr(c) if c in _SAFE_SET else (f"\\{chr(c)}" if 0x21 <= c < 0x7F else f"\\{c:03d}")
        for c in label
    )


def name_text(name: bytes) -> str:
    """An uncompressed wire name as lower-case absolute text (``.`` for the root)."""
    if name == b"\x00":
        return "."
    labels = []
    pos = 0
    while name[pos]:
        n = name[pos]
        labels.append(_label_text(name[pos + 1 : pos + 1 + n].lower()))
        pos += n + 1
    return ".".join(labels) + "."


def _name_at(data: bytes, pos: int) -> tuple[str, int]:
    name, end = wire.read_name(data, pos)
    return name_text(name), end


def _soa_from_wire(data: bytes, start: int, end: int) -> Soa:
    mname, pos = _name_at(data, start)
    rname, pos = _name_at(data, pos)
    if pos + 20 != end:
        raise FormError("malformed SOA")
    serial, refresh, retry, expire, minimum = struct.unpack_from("!IIIII", data, pos)
    text = f"{mname} {rname} {serial} {refresh} {retry} {expire} {minimum}"
    return Soa(serial, refresh, retry, expire, minimum, text)


_NAME_TYPES = frozenset((2, 5, 12, 39))  # NS, CNAME, PTR, DNAME: one name


def rdata_text(rtype: int, data: bytes, start: int, end: int) -> str:
    """Rdata at ``data[start:end]`` (names may point into ``data``) as master-file text."""
    if rtype in _NAME_TYPES:
        text, pos = _name_at(data, start)
        if pos != end:
            raise FormError("malformed name rdata")
        return text
    if rtype == wire.TYPE_A and end - start == 4:
        return socket.inet_ntop(socket.AF_INET, data[start:end])
    if rtype == wire.TYPE_AAAA and end - start == 16:
        return socket.inet_ntop(socket.AF_INET6, data[start:end])
    if rtype == wire.TYPE_SOA:
        return _soa_from_wire(data, start, end).text
    if rtype == 15 and end - start >= 3:  # MX
        exchange, pos = _name_at(data, start + 2)
        if pos != end:
            raise FormError("malformed MX")
        return f"{(data[start] << 8) | data[start + 1]} {exchange}"
    kind = dns.rdatatype.RdataType.make(rtype)
    rdata = dns.rdata.from_wire(dns.rdataclass.IN, kind, data, start, end - start)
    return rdata.to_text()


def _read(path: Path, limit: int = -1) -> str:
    """A zone file's text (``.gz`` and ``.xz`` decompressed, as the RPZ loader reads them);
    with ``limit``, at most about that many characters from its start."""
    opener: Callable[[Path, str], Any] = open
    if path.suffix == ".gz":
        opener = gzip.open
    elif path.suffix == ".xz":
        opener = lzma.open
    with opener(path, "rb") as raw:
        data: bytes = raw.read(limit)
    return data.decode("utf-8", "replace" if limit >= 0 else "strict")


def load_copy(config: ZoneConfig) -> Records | None:
    """The saved copy, read whole (the base an IXFR is applied to), or None when there is
    none. Raises on a copy that cannot be read. Copies written here are split into
    fields directly; any other zone file is read by dnspython (slower)."""
    if not config.file.exists():
        return None
    text = _read(config.file)
    if text.startswith(HEADER_MARK):
        return _load_own(config, text)
    zone = dns.zone.from_text(
        text,
        origin=config.name,
        relativize=False,
        allow_include=False,
        check_origin=False,
        filename=str(config.file),
    )
    records = Records(config.name)
    for name, node in zone.nodes.items():
        owner = name.to_text().lower()
        for rdataset in node.rdatasets:
            for rdata in rdataset:
                raw = rdata.to_wire() or b""
                if rdataset.rdtype == dns.rdatatype.SOA and owner == config.name:
                    records.soa = _soa_from_wire(raw, 0, len(raw))
                    records.soa_ttl = rdataset.ttl
                    continue
                key = (owner, int(rdataset.rdtype), rdata_text(rdataset.rdtype, raw, 0, len(raw)))
                records.records[key] = rdataset.ttl
    if records.soa is None:
        raise ValueError("the copy has no SOA record at the zone's origin")
    return records


def _load_own(config: ZoneConfig, text: str) -> Records:
    records = Records(config.name)
    store = records.records
    code = _type_code
    for number, line in enumerate(text.splitlines()[1:], start=2):
        if not line or line.startswith("$ORIGIN"):
            continue
        fields = line.split(None, 4)
        if len(fields) != 5 or fields[2] != "IN":
            raise ValueError(f"{config.file}:{number}: not a record line written here")
        owner, ttl, _, kind, rdata = fields
        if kind == "SOA" and owner == config.name:
            records.soa = Soa.parse(rdata)
            records.soa_ttl = int(ttl)
        else:
            store[(owner, code(kind), rdata)] = int(ttl)
    if records.soa is None:
        raise ValueError("the copy has no SOA record at the zone's origin")
    return records


def peek_soa(config: ZoneConfig) -> Soa | None:
    """The saved copy's SOA from the head of the file, without reading it whole: copies
    written here have it on one line at the top. None when it is not found there."""
    try:
        head = _read(config.file, 65536)
    except (OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile):
        return None
    origin = dns.name.from_text(config.name)
    for line in head.splitlines()[:50]:
        fields = line.split(";", 1)[0].split()
        if "SOA" not in fields[:4] or "(" in fields:
            continue
        at = fields.index("SOA")
        try:
            if dns.name.from_text(fields[0], origin) != origin:
                return None
            return Soa.parse(" ".join(fields[at + 1 :]))
        except (dns.exception.DNSException, ValueError):
            return None
    return None


def write_copy(config: ZoneConfig, records: Records, primary: Endpoint, kind: str) -> None:
    assert records.soa is not None
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (
        f"{HEADER_MARK}{config.name} serial {records.soa.serial}, {kind} from {primary} "
        f"at {stamp}\n"
    )
    data = records.text(header).encode("utf-8")
    if config.file.suffix == ".gz":
        data = gzip.compress(data, 6)
    elif config.file.suffix == ".xz":
        data = lzma.compress(data)
    write_atomically(config.file, data)


# --- reading a transfer (RFC 5936 AXFR, RFC 1995 IXFR) from the wire ---------------------------


class TransferError(Exception):
    """The primary answered the transfer with an error rcode."""

    def __init__(self, rcode: int) -> None:
        super().__init__(f"the primary answered {dns.rcode.to_text(dns.rcode.Rcode(rcode))}")
        self.rcode = rcode


class BrokenTransfer(Exception):
    """A transfer that does not make sense (wrong order, serials, deletions): not applied."""


Received = tuple[str, int, int, str, "Soa | None"]  # owner, type, TTL, rdata text, SOA fields


def read_message(data: bytes, qid: int) -> tuple[list[Received], int | None]:
    """The answer records of one transfer message, and where its TSIG record starts."""
    if len(data) < 12:
        raise FormError("shorter than a DNS header")
    rid, flags, qdcount, ancount, nscount, arcount = wire.HEADER.unpack_from(data)
    if rid != qid or not flags & wire.QR or flags & wire.OPCODE_MASK:
        raise FormError("not an answer to our transfer query")
    if flags & wire.TC:
        raise FormError("truncated transfer message")
    pos = 12
    for _ in range(qdcount):
        pos = wire.skip_name(data, pos) + 4
    records: list[Received] = []
    size = len(data)
    for _ in range(ancount):
        owner, pos = _name_at(data, pos)
        if pos + 10 > size:
            raise FormError("truncated record")
        rtype, rclass, ttl, rdlen = wire.RR_FIXED.unpack_from(data, pos)
        start = pos + 10
        pos = start + rdlen
        if pos > size:
            raise FormError("record runs past the end of the message")
        if rclass != wire.CLASS_IN:
            continue
        if rtype == wire.TYPE_SOA:
            soa = _soa_from_wire(data, start, pos)
            records.append((owner, rtype, ttl, soa.text, soa))
        else:
            records.append((owner, rtype, ttl, rdata_text(rtype, data, start, pos), None))
    for _ in range(nscount):
        pos = wire.skip_rr(data, pos)[2]
    tsig_start = None
    for index in range(arcount):
        rtype, _, end = wire.skip_rr(data, pos)
        if rtype == TYPE_TSIG:
            if index != arcount - 1:
                raise FormError("TSIG is not the last record")
            tsig_start = pos
        pos = end
    if pos != size:
        raise FormError("trailing bytes after the records")
    return records, tsig_start


TYPE_TSIG = 250
MAX_UNSIGNED = 99  # RFC 8945 5.3.1: unsigned messages allowed between signed ones


class TsigChain:
    """Checks the TSIG of every message of a transfer (RFC 8945 5.3.1), with dnspython."""

    def __init__(self, key: dns.tsig.Key | None, request_mac: bytes) -> None:
        self.key = key
        self.request_mac = request_mac
        self.ctx: Any = None
        self.unsigned = 0
        self.last_signed = False

    def check(self, data: bytes, tsig_start: int | None, first: bool) -> None:
        if self.key is None:
            if tsig_start is not None:
                raise BrokenTransfer("the primary signed a transfer we did not sign")
            return
        if tsig_start is None:
            if first:
                raise BrokenTransfer("missing TSIG on the first message")
            self.unsigned += 1
            if self.unsigned > MAX_UNSIGNED:
                raise BrokenTransfer("too many unsigned messages in a row")
            self.ctx.update(data)
            self.last_signed = False
            return
        owner, used = dns.name.from_wire(data, tsig_start)
        pos = tsig_start + used
        _, _, _, rdlen = wire.RR_FIXED.unpack_from(data, pos)
        rdata = dns.rdata.from_wire(dns.rdataclass.ANY, dns.rdatatype.TSIG, data, pos + 10, rdlen)
        self.ctx = dns.tsig.validate(  # type: ignore[no-untyped-call]
            data,
            self.key,
            owner,
            rdata,
            int(time.time()),
            self.request_mac,
            tsig_start,
            self.ctx,
            True,
        )
        self.unsigned = 0
        self.last_signed = True


class Incoming:
    """Follows the records of an AXFR, or of an IXFR answered either way, and builds the
    result: new Records (AXFR, or AXFR-style IXFR) or the differences to apply."""

    def __init__(self, origin: str, ours: int | None) -> None:
        self.origin = origin
        self.ours = ours  # the serial an IXFR was asked from; None for an AXFR
        self.first: Soa | None = None
        self.first_ttl = 0
        self.state = "start"
        self.full: Records | None = None  # an AXFR-style answer
        self.changes: list[tuple[bool, Record, int]] = []  # (add?, record, ttl) of an IXFR
        self.serial: int | None = None  # the version the IXFR differences have reached
        self.up_to_date = False

    @property
    def done(self) -> bool:
        return self.state == "done"

    def feed(self, received: Iterable[Received]) -> None:
        origin = self.origin
        suffix = "." + origin
        for owner, rtype, ttl, rdata, soa in received:
            state = self.state
            apex_soa = soa if rtype == wire.TYPE_SOA and owner == origin else None
            if state == "done":
                raise BrokenTransfer("records after the final SOA")
            if state == "start":
                if apex_soa is None:
                    raise BrokenTransfer("the transfer does not begin with the zone's SOA")
                self.first, self.first_ttl = apex_soa, ttl
                if self.ours is not None and apex_soa.serial == self.ours:
                    self.state, self.up_to_date = "done", True
                else:
                    self.state = "second" if self.ours is not None else "full"
                    if self.ours is None:
                        self._start_full()
                continue
            if state == "second":
                if apex_soa is not None:  # an incremental answer: the first deletion set
                    if apex_soa.serial != self.ours:
                        raise BrokenTransfer("IXFR base serial mismatch")
                    self.serial, self.state = apex_soa.serial, "deleting"
                    continue
                self._start_full()  # the whole zone, as in an AXFR
                self.state = state = "full"
            if apex_soa is not None:
                assert self.first is not None
                if state == "full":
                    if apex_soa != self.first:
                        raise BrokenTransfer("an SOA in the middle of the zone")
                    self.state = "done"
                elif state == "deleting":  # the addition set of this difference
                    self.serial, self.state = apex_soa.serial, "adding"
                elif apex_soa == self.first:  # after additions: the final SOA
                    if self.serial != apex_soa.serial:
                        raise BrokenTransfer("unexpected end of the IXFR")
                    self.state = "done"
                else:  # the deletion set of the next difference
                    if apex_soa.serial != self.serial:
                        raise BrokenTransfer("IXFR differences out of sequence")
                    self.state = "deleting"
                continue
            if owner != origin and not owner.endswith(suffix):
                continue  # outside the zone (glue): not kept
            record = (owner, rtype, rdata)
            if state == "full":
                assert self.full is not None
                self.full.records[record] = ttl
            else:
                self.changes.append((state == "adding", record, ttl))

    def _start_full(self) -> None:
        self.full = Records(self.origin)
        self.full.soa, self.full.soa_ttl = self.first, self.first_ttl

    def apply(self, base: Records) -> None:
        """Apply IXFR differences to ``base``: all of them, or (on a deletion of a record
        that is not there) none."""
        store = base.records
        undo: list[tuple[Record, int | None]] = []
        try:
            for add, record, ttl in self.changes:
                before = store.get(record)
                if add:
                    store[record] = ttl
                elif before is None:
                    raise BrokenTransfer(f"the IXFR deletes a record we do not have: {record}")
                else:
                    del store[record]
                undo.append((record, before))
        except BrokenTransfer:
            for record, before in reversed(undo):
                if before is None:
                    store.pop(record, None)
                else:
                    store[record] = before
            raise
        assert self.first is not None
        base.soa, base.soa_ttl = self.first, self.first_ttl


def _recv_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks = []
    while size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        sock.settimeout(min(left, XFR_TIMEOUT))
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise ConnectionError("the primary closed the connection mid-transfer")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# --- one check against one primary (blocking, run in a thread) ----------------------------


class TransferFailed(Exception):
    """A check or transfer that changed nothing. ``dirty``: the copy in memory was changed
    and must be read again from the file."""

    def __init__(self, message: str, dirty: bool = False) -> None:
        super().__init__(message)
        self.dirty = dirty


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, dns.tsig.PeerError | dns.tsig.BadSignature | dns.message.UnknownTSIGKey):
        return f"TSIG rejected: {type(exc).__name__} {exc}".strip()
    if isinstance(exc, dns.tsig.BadTime | dns.tsig.BadKey | dns.tsig.BadAlgorithm):
        return f"TSIG rejected: {type(exc).__name__}"
    if isinstance(exc, dns.exception.Timeout | TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, TransferError | BrokenTransfer | TransferFailed):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
            raise TransferFailed(_describe(exc)) from None

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
                raise TransferFailed(f"IXFR: {_describe(exc)}") from None
            return self._done(self._axfr(), "axfr", ours, started, False, _describe(exc))
        if incoming.up_to_date:
            return Checked(copy, "none", saved)
        if incoming.full is not None:  # the primary sent the whole zone
            return self._done(incoming.full, "axfr", ours, started, False, "")
        if copy is None:  # read the copy only now that the differences need a base
            try:
                copy = load_copy(self.config)
            except Exception as exc:
                reason = f"the saved copy cannot be read ({_describe(exc)})"
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


def in_thread(function: Callable[[], T]) -> asyncio.Future[T]:
    """Run ``function`` in a daemon thread: nothing ever waits for it to end at shutdown."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = function(), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="zone-transfer", daemon=True).start()
    return future


# --- following one zone, and all of them ------------------------------------------------------


class ZoneFollower:
    """Keeps one zone's copy current: timers, NOTIFY, one check at a time."""

    def __init__(
        self,
        config: ZoneConfig,
        on_change: Callable[[], None],
        log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.on_change = on_change
        self.log = log.bind(zone=config.name)
        self.clock = clock
        self.copy: Records | None = None  # the copy in memory (read when an IXFR needs it)
        self.saved: Soa | None = None  # the SOA of the copy on disk
        self.timer = ZoneClock(None, None, clock())
        self.busy = False
        self.again = False
        self._handle: asyncio.TimerHandle | None = None
        self._check_timer = False  # the handle wakes for a check (else for the expiry)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def serial(self) -> int | None:
        return int(self.saved.serial) if self.saved is not None else None

    def prepare(self) -> None:
        """Before the first policy is built: date the saved copy (its modification time is
        its last successful check) and read its SOA from the top of the file; with
        ``on_expire: drop`` move it aside if it expired while the resolver was stopped."""
        copy = self.config.file
        for stale in copy.parent.glob(f".{copy.name}.*.tmp"):  # a write cut short by a stop
            with contextlib.suppress(OSError):
                stale.unlink()
        try:
            mtime = copy.stat().st_mtime
        except OSError:
            return
        self.timer.confirmed = mtime
        soa = peek_soa(self.config)
        if soa is None and self.config.on_expire == "drop":
            try:  # a copy written elsewhere, SOA not at the top: read it whole
                self.copy = load_copy(self.config)
            except Exception as exc:
                self.log.warning(
                    "zone_copy_unreadable", file=str(self.config.file), error=_describe(exc)
                )
            soa = self.copy.soa if self.copy is not None else None
        if soa is not None:
            self._adopt(soa)
            self._found(mtime)
            self._poll_expiry(self.clock())

    def _adopt(self, soa: Soa) -> None:
        self.saved = soa
        self.timer.timers = Timers.of(soa)

    def start(self) -> None:
        self._check_soon("start")

    def notify(self) -> None:
        """A listed primary says the zone changed: check now, or again right after the
        check under way (RFC 1996 4.4)."""
        if self.busy:
            self.again = True
        else:
            self._check_soon("notify")

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
        if self._task is not None:
            self._task.cancel()

    def _check_soon(self, reason: str) -> None:
        if self._closed or self.busy:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self.busy = True
        self.again = False
        self._task = asyncio.ensure_future(self._run(reason))

    async def _run(self, reason: str) -> None:
        try:
            while True:
                await self._check(reason)
                if not self.again or self._closed:
                    break
                self.again = False  # NOTIFYs during the check: one more check covers them all
                reason = "notify"
        finally:
            self.busy = False
            self._schedule()

    async def _load(self) -> None:
        """Know the saved copy's SOA: from the top of the file, else by reading it whole."""
        if self.saved is not None or not self.config.file.exists():
            return
        soa = peek_soa(self.config)
        if soa is None:
            try:
                copy = await in_thread(partial(load_copy, self.config))
            except Exception as exc:
                self.log.warning(
                    "zone_copy_unreadable",
                    file=str(self.config.file),
                    error=_describe(exc),
                    detail="a full transfer (AXFR) will replace it",
                )
                return
            if copy is None or self._closed:
                return
            self.copy = copy
            soa = copy.soa
            assert soa is not None
        self._adopt(soa)
        if self.timer.confirmed is not None:
            self._found(self.timer.confirmed)

    def _found(self, mtime: float) -> None:
        self.log.info(
            "zone_copy_loaded",
            file=str(self.config.file),
            serial=self.serial,
            last_refresh=datetime.fromtimestamp(mtime, UTC).isoformat(),
        )

    async def _check(self, reason: str) -> None:
        await self._load()
        self._poll_expiry(self.clock())  # a copy that expired while stopped: said at once
        for primary in self.config.primaries:
            fetcher = Fetcher(self.config, primary)
            try:
                checked = await in_thread(partial(fetcher.check, self.copy, self.saved))
            except TransferFailed as exc:
                if exc.dirty:
                    self.copy = None  # read the file again next time
                self.log.error(
                    "zone_transfer_failed", primary=str(primary), error=str(exc), reason=reason
                )
                continue
            if self._closed:
                return
            self._succeeded(checked, primary, reason)
            return
        self.timer.failed(self.clock())
        self._poll_expiry(self.clock())

    def _succeeded(self, checked: Checked, primary: Endpoint, reason: str) -> None:
        now = self.clock()
        if checked.zone is not None:
            self.copy = checked.zone
        self._adopt(checked.soa)
        was_expired = self.timer.succeeded(now, Timers.of(checked.soa))
        if checked.kind == "none":
            with contextlib.suppress(OSError):
                os.utime(self.config.file)  # the copy is current as of now (survives restarts)
            self.log.debug("zone_current", primary=str(primary), serial=checked.serial)
        else:
            fields: dict[str, Any] = {}
            if checked.ixfr_error:
                fields["ixfr_failed"] = checked.ixfr_error
            self.log.info(
                "zone_transferred",
                serial=checked.serial,
                kind=checked.kind,
                records=checked.records,
                duration_ms=round(checked.seconds * 1000, 1),
                primary=str(primary),
                reason=reason,
                file=str(self.config.file),
                **fields,
            )
        if was_expired:
            self.log.warning("zone_refreshed_after_expiry", serial=checked.serial)
        if checked.kind != "none":
            self.on_change()

    def _poll_expiry(self, now: float) -> None:
        state = self.timer.poll_expiry(now)
        if state is None:
            return
        confirmed = self.timer.confirmed or 0.0
        self.log.error(
            "zone_expired",
            serial=self.serial,
            last_refresh=datetime.fromtimestamp(confirmed, UTC).isoformat(),
            expired_for_s=round(now - (self.timer.expires_at() or now)),
            on_expire=self.config.on_expire,
            primaries=[str(p) for p in self.config.primaries],
            detail=(
                "no primary answered within the SOA expire time; "
                + (
                    "the last copy is no longer enforced"
                    if self.config.on_expire == "drop"
                    else "still enforcing the last copy"
                )
            ),
        )
        if state == "expired" and self.config.on_expire == "drop":
            self._drop()

    def _drop(self) -> None:
        """Stop enforcing the zone: its copy goes to ``<file>.expired`` and the policy reloads."""
        aside = self.config.file.with_name(self.config.file.name + ".expired")
        try:
            os.replace(self.config.file, aside)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.log.error("zone_drop_failed", file=str(self.config.file), error=exc.strerror)
            return
        self.copy = None
        self.saved = None
        self.timer.forget()
        self.log.error("zone_dropped", file=str(self.config.file), moved_to=str(aside))
        self.on_change()

    def _schedule(self) -> None:
        if self._closed:
            return
        if self._handle is not None:
            self._handle.cancel()
        wake = self.timer.wake_at()
        # Checks are timed by the loop's monotonic clock: a wall-clock step cannot delay
        # them (expiry stays on the wall clock, which the copy's date is in).
        self._check_timer = wake >= self.timer.next_check
        delay = max(wake - self.clock(), 0.0)
        self._handle = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        now = self.clock()
        if self._check_timer or self.timer.check_due(now):
            self._check_soon("retry" if self.timer.failures else "refresh")
        else:
            self._poll_expiry(now)
            self._schedule()


class Secondary:
    """Every zone with primaries, followed; ``on_change`` runs after a copy changed."""

    def __init__(
        self,
        zones: Iterable[ZoneConfig],
        on_change: Callable[[], None],
        log: Any,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.on_change = on_change
        self.log = log
        self.clock = clock
        self.followers: dict[str, ZoneFollower] = {}
        self.gate = NotifyGate(())
        self._started = False
        self._set(zones)

    def _set(self, zones: Iterable[ZoneConfig]) -> list[ZoneFollower]:
        zones = [z for z in zones if z.primaries]
        self.gate = NotifyGate(zones)
        added = []
        wanted = {z.name: z for z in zones}
        for name, follower in list(self.followers.items()):
            if wanted.get(name) != follower.config:
                follower.close()
                del self.followers[name]
        for name, zone in wanted.items():
            if name not in self.followers:
                follower = ZoneFollower(zone, self.on_change, self.log, self.clock)
                self.followers[name] = follower
                added.append(follower)
        return added

    def prepare(self) -> None:
        for follower in self.followers.values():
            follower.prepare()

    def start(self) -> None:
        self._started = True
        for follower in self.followers.values():
            follower.start()

    def reconfigure(self, zones: Iterable[ZoneConfig]) -> None:
        """After a configuration reload: follow new zones, stop following removed ones."""
        for follower in self._set(zones):
            follower.prepare()
            if self._started:
                follower.start()

    def notify(self, zone: str, client: str) -> bool:
        """A NOTIFY for ``zone`` from ``client``: checked against the zone's primaries."""
        follower = self.followers.get(zone)
        if follower is None or not self.gate.is_primary(zone, client):
            self.log.warning(
                "notify_refused", zone=zone, client=client, reason="not a primary of the zone"
            )
            return False
        follower.notify()
        return True

    def close(self) -> None:
        for follower in self.followers.values():
            follower.close()


class NotifyListener:
    """What a serving process does with a NOTIFY: answer it, log it, pass it on with
    ``forward(zone, client)`` (to the Secondary, or over the pipe to the supervisor)."""

    def __init__(
        self, zones: Iterable[ZoneConfig], forward: Callable[[str, str], None], log: Any
    ) -> None:
        self.gate = NotifyGate([z for z in zones if z.primaries])
        self.forward = forward
        self.log = log
        self.clock = time.monotonic
        self._window = -REFUSED_LOG_WINDOW
        self._logged = 0
        self._suppressed = 0

    def __call__(self, data: bytes, client: str) -> bytes | None:
        outcome = self.gate.handle(data, client)
        if outcome.accepted and outcome.zone is not None:
            self.log.info(
                "notify_received", zone=outcome.zone, client=client, serial=outcome.serial
            )
            self.forward(outcome.zone, client)
        elif self._may_log():
            fields: dict[str, Any] = {}
            if self._suppressed:
                fields["not_logged_before"] = self._suppressed
                self._suppressed = 0
            self.log.warning(
                "notify_refused",
                zone=outcome.zone,
                client=client,
                reason=outcome.reason,
                rcode=dns.rcode.to_text(dns.rcode.Rcode(outcome.rcode)),
                **fields,
            )
        return outcome.reply

    def _may_log(self) -> bool:
        """Refused NOTIFYs are logged at most REFUSED_LOG_BURST times a REFUSED_LOG_WINDOW:
        anyone can send them, and the log must not be theirs to fill."""
        now = self.clock()
        if now - self._window >= REFUSED_LOG_WINDOW:
            self._window = now
            self._logged = 0
        if self._logged < REFUSED_LOG_BURST:
            self._logged += 1
            return True
        self._suppressed += 1
        return False
