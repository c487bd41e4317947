"""Zone files (master files, RFC 1035 section 5) read into records by owner, fast.

A zone file has $ORIGIN, $TTL, $INCLUDE, $GENERATE, relative names, comments and
records over several lines in parentheses. The records are read by dnspython's zone
file reader (``dns.zonefile.Reader``, what ``dns.zone.from_text`` uses); a large RPZ
feed is almost only one-line ``name [ttl] [IN] CNAME|A|AAAA value`` records, which a
fast path reads itself (dnspython takes about 50 s for 140,000 records, the fast path
well under one second). Every line the fast path does not take, with all the
directives, goes to dnspython at its own line number, so both readings agree and
errors name the file and line.

Files are read through resolver.sources.files (regular files only, size-capped,
``.gz``/``.xz``/``.bz2`` decompressed). An $INCLUDE may only read files in the
directories it is given (the zone file's own, and those the configuration adds),
and below them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import dns.exception
import dns.grange
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.SOA
import dns.tokenizer
import dns.transaction
import dns.ttl
import dns.zonefile

from resolver.core import wire
from resolver.core.errors import PolicyError, SourceError, quote
from resolver.sources import files

MAX_INCLUDE_DEPTH = 8
# Records $GENERATE may make in one zone: one line must not stand for billions of records
# (dnspython reads about 25,000 records a second, so this is a few seconds at most).
MAX_GENERATED = 65_536
MAX_MESSAGE = 300  # characters of a dnspython message kept (it may quote a token)
MAX_TTL = 2**31 - 1
ROOT = b"\x00"

# Zone-signing records: never policy.
IGNORED_TYPES = frozenset(
    {
        dns.rdatatype.RRSIG,
        dns.rdatatype.NSEC,
        dns.rdatatype.NSEC3,
        dns.rdatatype.NSEC3PARAM,
        dns.rdatatype.DNSKEY,
        dns.rdatatype.CDS,
        dns.rdatatype.CDNSKEY,
        dns.rdatatype.ZONEMD,
    }
)

# One plain record on one line: owner at column 0, optional TTL (seconds) and class IN,
# type CNAME, A or AAAA, one value, an optional comment. No quotes, parentheses, escapes.
_TOKEN = r"[!#-'*-:<-\[\]-~]+"  # printable ASCII but space ; ( ) " \\
_FAST = re.compile(
    rf"(?!\$)({_TOKEN})[ \t]+(?:(\d{{1,10}})[ \t]+)?(?:[Ii][Nn][ \t]+)?"
    rf"([Cc][Nn][Aa][Mm][Ee]|[Aa]|[Aa][Aa][Aa][Aa])[ \t]+({_TOKEN})[ \t]*(?:;.*)?"
)

Record = tuple[int, int, bytes, int, str]  # type, TTL, data, line, file


def read_text(path: Path, limit: int = files.DEFAULT_MAX_SIZE) -> str:
    """A zone file's text (``.gz``, ``.xz`` and ``.bz2`` decompressed), at most ``limit`` bytes."""
    return files.read_text(path, "zone file", limit, PolicyError, "max_file_size")


class _Collector:
    """Stands in for the dnspython transaction the zone file reader writes to."""

    def __init__(self, origin: dns.name.Name, add: Callable[[dns.name.Name, int, Any], None]):
        self.manager = self
        self.origin = origin
        self.add = add

    def origin_information(self) -> tuple[dns.name.Name, bool, dns.name.Name]:
        return self.origin, True, dns.name.empty

    def check_put_rdataset(self, check: object) -> None:
        pass  # CNAME-and-other-data is checked over all records, fast path included

    def _set_origin(self, origin: object) -> None:
        pass

    def add_unicode(self, value: object) -> None:
        pass


class _Reader(dns.zonefile.Reader):
    """dnspython's zone file reader, noting the line each record starts on."""

    line = 0
    in_record = False  # an error now is in the record that starts at ``line``

    def _rr_line(self) -> None:
        self.line = self.tok.line_number
        self.in_record = True
        super()._rr_line()
        self.in_record = False

    zone: ZoneReader | None = None  # counts the records $GENERATE makes

    def _generate_line(self) -> None:
        self.line = self.tok.line_number
        self.in_record = True
        token = self.tok.get()
        self.tok.unget(token)
        try:
            start, stop, step = dns.grange.from_text(token.value)
        except Exception:
            start, stop, step = 1, 0, 1  # dnspython reports the range
        count = (stop - start) // step + 1 if step > 0 and stop >= start else 0
        if self.zone is not None:
            self.zone.count_generated(count)
        super()._generate_line()  # type: ignore[no-untyped-call]
        self.in_record = False


class ZoneReader:
    """Reads one zone's file (and its $INCLUDEs) into records by owner.

    ``include_dirs``: the directories an $INCLUDE may read from (and below them),
    absolute and resolved; ``limit``: the most bytes read from one file.
    """

    def __init__(
        self,
        origin: str,
        include_dirs: tuple[Path, ...] = (),
        limit: int = files.DEFAULT_MAX_SIZE,
    ) -> None:
        self.origin = origin  # lower case, trailing dot
        self.origin_name = dns.name.from_text(origin)
        self.origin_wire = self.origin_name.canonicalize().to_wire() or ROOT
        self.origin_len = len(self.origin_wire)
        self.include_dirs = include_dirs
        self.limit = limit
        self.owners: dict[bytes, Record | list[Record]] = {}
        self.records = 0
        self.serial: int | None = None
        self.generated = 0

    def count_generated(self, count: int) -> None:
        """Count the records of one $GENERATE before they are made; too many is an error."""
        self.generated += count
        if self.generated > MAX_GENERATED:
            raise dns.exception.SyntaxError(  # type: ignore[no-untyped-call]
                f"$GENERATE would make more than {MAX_GENERATED:,} records in this zone; "
                "list the names instead"
            )

    def read_file(
        self,
        path: Path,
        origin: str,
        default_ttl: int | None,
        stack: tuple[Path, ...],
        depth: int,
        line: int,
    ) -> None:
        """One file: the zone's own (``line`` 0), or an $INCLUDE at ``line`` of ``stack[-1]``."""
        resolved = Path(os.path.realpath(path))  # a symlink loop is reported by files
        if resolved in stack:
            raise PolicyError(f"$INCLUDE loop: {path} is already being read", str(stack[-1]), line)
        text = read_text(path, self.limit)
        self.read_text(text, str(path), path.parent, origin, default_ttl, (*stack, resolved), depth)

    def read_text(
        self,
        text: str,
        source: str,
        base: Path,
        origin: str,
        default_ttl: int | None,
        stack: tuple[Path, ...],
        depth: int,
    ) -> None:
        """One file: plain lines on the fast path, the rest through dnspython."""
        lines = text.split("\n")
        slow = [""] * len(lines)
        zone = self.origin
        current = origin  # $ORIGIN, absolute, lower case
        suffix = self._suffix(current)
        ttl_default = default_ttl
        depth_parens = 0
        pending: tuple[bytes, int, int, bytes, int] | None = None  # a fast record not yet kept
        fast = _FAST.fullmatch
        add = self._add
        for index, raw in enumerate(lines):
            line = raw[:-1] if raw.endswith("\r") else raw
            if depth_parens == 0:
                if not line or line[0] == ";":
                    continue
                match = fast(line) if ttl_default is not None and suffix is not None else None
                if match is not None and line.isascii():
                    assert ttl_default is not None
                    record = self._fast(match, zone, current, suffix, ttl_default)
                    if record is not None:
                        if pending is not None:
                            add(*pending, source)
                        rtype, owner, ttl, data = record
                        pending = (owner, rtype, ttl, data, index + 1)
                        continue
                stripped = line.strip()
                if not stripped or stripped[0] == ";":
                    continue
                if line[0] == "$":
                    directive = stripped.split(None, 1)[0].upper()
                    if directive == "$INCLUDE":
                        self._include(line, source, base, current, ttl_default, stack, depth, index)
                        continue
                    if directive == "$ORIGIN":
                        current = self._origin(stripped, current)
                        suffix = self._suffix(current) if current else None
                    elif directive == "$TTL":
                        ttl_default = _ttl(stripped)
                elif line[0] in " \t" and pending is not None:
                    # The owner is the previous record's: give that one to dnspython too.
                    slow[pending[4] - 1] = lines[pending[4] - 1].rstrip("\r")
                    pending = None
                elif pending is not None:
                    add(*pending, source)
                    pending = None
            slow[index] = line
            depth_parens = _parens(line, depth_parens)
        if pending is not None:
            add(*pending, source)
        last_slow = max((i for i, t in enumerate(slow) if t), default=-1)
        if last_slow >= 0:
            self._slow("\n".join(slow[: last_slow + 1]) + "\n", source, origin, default_ttl)

    def _fast(
        self, match: re.Match[str], zone: str, current: str, suffix: str | None, ttl: int
    ) -> tuple[int, bytes, int, bytes] | None:
        """(type, relative owner in wire form, TTL, data) of a plain record, or None when
        dnspython must read it (to report the problem, or because the name is unusual)."""
        owner_text, ttl_text, type_text, value = match.groups()
        owner_text = owner_text.lower()
        if owner_text == "@":
            rel = ""
        elif owner_text.endswith("."):
            if owner_text == zone:
                rel = ""
            elif owner_text.endswith("." + zone):
                rel = owner_text[: -len(zone) - 1]
            else:
                return None
        else:
            rel = owner_text if not suffix else f"{owner_text}.{suffix}"
        if rel:
            owner = _rel_wire(rel)
            if owner is None or len(owner) + self.origin_len > wire.MAX_NAME + 1:
                return None
        else:
            owner = ROOT
        if ttl_text is not None:
            ttl = int(ttl_text)
            if ttl > MAX_TTL:
                return None
        kind = type_text.upper()
        if kind == "CNAME":
            target = ROOT if value == "." else _wire(_absolute(value.lower(), current))
            if target is None:
                return None
            data = target
            rtype = wire.TYPE_CNAME
        elif kind == "A":
            try:
                data = ipaddress.IPv4Address(value).packed
            except ValueError:
                return None
            rtype = wire.TYPE_A
        else:
            if "%" in value:
                return None
            try:
                data = ipaddress.IPv6Address(value).packed
            except ValueError:
                return None
            rtype = wire.TYPE_AAAA
        return rtype, owner, ttl, data

    def _suffix(self, current: str) -> str | None:
        """The current $ORIGIN relative to the zone ("" at the apex), or None outside it."""
        zone = self.origin
        if current == zone:
            return ""
        if current.endswith("." + zone):
            return current[: -len(zone) - 1]
        return None

    def _origin(self, line: str, current: str) -> str:
        parts = line.split(None, 2)
        if len(parts) < 2 or parts[1].startswith(";"):
            return ""  # dnspython reports it
        name = parts[1].lower()
        if any(c in name for c in '\\"()') or not name.isascii():
            return ""  # unusual (escapes, Unicode): leave the records to dnspython
        return _absolute(name, current)

    def _include(
        self,
        line: str,
        source: str,
        base: Path,
        current: str,
        ttl: int | None,
        stack: tuple[Path, ...],
        depth: int,
        index: int,
    ) -> None:
        """$INCLUDE file [origin]: the file (relative to this one's directory) is read with
        this file's $ORIGIN (or the given one) and $TTL; afterwards both are as before."""
        body = line.split(";", 1)[0] if '"' not in line else line
        parts = _include_words(body.strip())
        if parts is None:
            raise PolicyError("unbalanced quote in $INCLUDE", source, index + 1)
        if len(parts) < 2 or len(parts) > 3:
            raise PolicyError("$INCLUDE needs a file name and at most an origin", source, index + 1)
        if depth >= MAX_INCLUDE_DEPTH:
            raise PolicyError(
                f"$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep", source, index + 1
            )
        if "\x00" in parts[1]:
            raise PolicyError("$INCLUDE: the file name holds a NUL character", source, index + 1)
        path = Path(parts[1])
        if not path.is_absolute():
            path = base / path
        origin = _absolute(parts[2].lower(), current) if len(parts) == 3 else current
        if origin != self.origin and not origin.endswith("." + self.origin):
            raise PolicyError(
                f"$INCLUDE origin {origin} is outside the zone {self.origin}", source, index + 1
            )
        self._check_inside(path, parts[1], source, index + 1)
        try:
            self.read_file(path, origin, ttl, stack, depth + 1, index + 1)
        except SourceError as exc:
            if exc.source != str(path) or exc.line:
                raise  # an error inside the included file, at its own line
            raise PolicyError(
                f"$INCLUDE {quote(parts[1])}: {exc.message}", source, index + 1
            ) from None

    def _check_inside(self, path: Path, written: str, source: str, line: int) -> None:
        """An $INCLUDE outside the allowed directories is an error at its line."""
        if not self.include_dirs:
            return
        real = Path(os.path.realpath(path))
        if any(real.is_relative_to(folder) for folder in self.include_dirs):
            return
        where = " or ".join(str(folder) for folder in self.include_dirs)
        raise PolicyError(
            f"$INCLUDE {quote(written)}: {real} is outside {where}; an $INCLUDE reads only "
            "files in the zone file's directory and below it, or in a directory listed "
            "under include_dirs: in the zone's configuration",
            source,
            line,
        )

    def _slow(self, text: str, source: str, origin: str, default_ttl: int | None) -> None:
        """The lines the fast path left, read by dnspython at their own line numbers."""
        tok = dns.tokenizer.Tokenizer(text, source)
        collector = _Collector(self.origin_name, self._add_rdata)
        reader = _Reader(
            tok,
            dns.rdataclass.IN,
            cast(dns.transaction.Transaction, collector),
            allow_include=False,
            default_ttl=default_ttl,
        )
        reader.zone = self
        start = dns.name.from_text(origin)
        reader.current_origin = start
        reader.last_name = start
        self._reader = reader
        try:
            reader.read()
        except (dns.exception.DNSException, ValueError) as exc:
            # ValueError: what dnspython lets through, such as a TTL of 5,000 digits.
            file, line = reader.tok.where()
            message = str(exc)
            if not isinstance(exc, dns.exception.DNSException):
                message = "cannot read this record: " + message.split(";")[0]
            prefix = f"{file}:{line}: "
            if message.startswith(prefix):
                message = message[len(prefix) :]
            if reader.in_record:
                line = reader.line  # where the record starts, not where reading stopped
            if len(message) > MAX_MESSAGE:
                message = message[:MAX_MESSAGE] + "..."
            raise PolicyError(_friendly(message), str(file), int(line)) from None

    def _add_rdata(self, name: dns.name.Name, ttl: int, rdata: Any) -> None:
        reader = self._reader
        file = str(reader.tok.filename)
        if name.is_absolute():
            if not name.is_subdomain(self.origin_name):
                return
            name = name.relativize(self.origin_name)
        rtype = int(rdata.rdtype)
        if rtype in IGNORED_TYPES:
            return
        if rtype == wire.TYPE_CNAME:
            target = cast(dns.rdtypes.ANY.CNAME.CNAME, rdata).target
            data = target.derelativize(self.origin_name).canonicalize().to_wire()
            assert data is not None
        elif rtype == wire.TYPE_SOA and not name.labels:
            self.serial = int(cast(dns.rdtypes.ANY.SOA.SOA, rdata).serial)
            data = b""
        else:
            data = rdata.to_wire(origin=self.origin_name)
        owner = b"".join(bytes((len(label),)) + label.lower() for label in name.labels) + ROOT
        self._add(owner, rtype, ttl, data, reader.line, file)

    def _add(self, owner: bytes, rtype: int, ttl: int, data: bytes, line: int, file: str) -> None:
        self.records += 1
        record = (rtype, ttl, data, line, file)
        slot = self.owners.get(owner)
        if slot is None:
            self.owners[owner] = record
        elif type(slot) is tuple:
            self.owners[owner] = [slot, record]
        else:
            slot.append(record)  # type: ignore[union-attr]


# --- helpers -----------------------------------------------------------------------------


def _absolute(name: str, current: str) -> str:
    """A master-file name made absolute against the current origin (lower case)."""
    if name == "@":
        return current
    if name.endswith("."):
        return name
    return f"{name}.{current}" if current != "." else f"{name}."


_LENGTH = [bytes((n,)) for n in range(64)]


def _rel_wire(name: str) -> bytes | None:
    """Wire form of a lower-case name without escapes or trailing dot (root-terminated), or
    None when a label is empty or longer than 63 octets."""
    labels = name.encode("ascii").split(b".")
    if b"" in labels or max(map(len, labels)) > 63:
        return None
    length = _LENGTH
    return b"".join([length[len(label)] + label for label in labels]) + ROOT


def _wire(name: str) -> bytes | None:
    """Wire form of an absolute lower-case name without escapes, or None if it is invalid."""
    if name == ".":
        return ROOT
    data = _rel_wire(name[:-1])
    return data if data is not None and len(data) <= wire.MAX_NAME else None


def _ttl(line: str) -> int | None:
    parts = line.split(None, 2)
    if len(parts) < 2:
        return None
    try:
        return int(dns.ttl.from_text(parts[1]))
    except dns.exception.DNSException:
        return None  # dnspython reports it


def _parens(line: str, depth: int) -> int:
    """The parenthesis depth after ``line`` (quotes, escapes and comments respected)."""
    if "(" not in line and ")" not in line:
        return depth
    quoted = escaped = False
    for ch in line:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch == ";":
            break
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
    return depth


def _include_words(text: str) -> list[str] | None:
    """The words of an $INCLUDE line (a quoted file name may hold spaces); None when a
    quote is not closed."""
    words: list[str] = []
    rest = text
    while rest:
        rest = rest.lstrip()
        if not rest or rest.startswith(";"):
            break
        if rest.startswith('"'):
            end = rest.find('"', 1)
            if end < 0:
                return None
            words.append(rest[1:end])
            rest = rest[end + 1 :]
        else:
            word = rest.split(None, 1)[0].split(";", 1)[0]
            words.append(word)
            rest = rest[len(word) :]
    return words


def _friendly(message: str) -> str:
    """dnspython's message, without the exception class it sometimes names."""
    return re.sub(r"caught exception <class '[\w.]+'>: ", "", message)
