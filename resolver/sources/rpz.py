"""RPZ zones (Response Policy Zones, draft-vixie-dnsop-dns-rpz): zone files in, policy layers out.

A zone is a standard master file: $ORIGIN, $TTL, $INCLUDE, $GENERATE, relative names,
comments, records over several lines in parentheses. The records are read by
dnspython's zone file reader (``dns.zonefile.Reader``, what ``dns.zone.from_text``
uses); a large feed is almost only one-line ``name [ttl] [IN] CNAME|A|AAAA value``
records, which a fast path reads itself (dnspython takes about 50 s for 140,000
records, the fast path well under one second). Every line the fast path does not
take, with all the directives, goes to dnspython at its own line number, so both
readings agree and errors name the file and line.

Triggers, by the owner name relative to the zone's origin:

    name                          QNAME: the name itself
    *.name                        QNAME: every name under it
    P.B4.B3.B2.B1.rpz-client-ip   CLIENT-IP: queries from clients in B1.B2.B3.B4/P
    P.W8...W1.rpz-client-ip       the same for IPv6 (16-bit words reversed, zz for ::)
    P.B4.B3.B2.B1.rpz-ip          response IP: an A or AAAA of the upstream's answer in it
    name.rpz-nsdname, ....rpz-nsip   not evaluated (a forwarder never sees the name
                                  servers); skipped with one warning

Actions, by the records at the owner:

    CNAME .                NXDOMAIN
    CNAME *.               NODATA
    CNAME rpz-passthru.    PASSTHRU (an exemption: Action.ALLOW); also the legacy form,
                           a CNAME to the owner's own (relative) name
    CNAME rpz-drop.        DROP (no answer)
    CNAME rpz-tcp-only.    TCP-ONLY (over UDP an empty truncated answer)
    CNAME name.            local data: answered with that CNAME
    CNAME *.name.          local data: a CNAME to the query name followed by name.
    anything else          local data: A, AAAA, TXT, MX ... records, answered for their type
                           (other types get NODATA)

The answers' TTL is the policy record's TTL. SOA and NS at the apex, DNSSEC records
and records outside the zone are ignored.
"""

from __future__ import annotations

import gzip
import ipaddress
import lzma
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.exception
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
from resolver.core.errors import PolicyError
from resolver.core.layers import AddressTriggers, ClientTriggers, IpEntry, PolicyLayer
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import EVERYONE, Action, Answers, Network, PolicyInfo, Redirect, Verdict
from resolver.sources.config import ZoneConfig

MAX_INCLUDE_DEPTH = 8
MAX_TTL = 2**31 - 1

CLIENT_IP = b"\x0drpz-client-ip\x00"
RESPONSE_IP = b"\x06rpz-ip\x00"
NSDNAME = b"\x0brpz-nsdname\x00"
NSIP = b"\x08rpz-nsip\x00"

ROOT = b"\x00"
WILDCARD_ROOT = b"\x01*\x00"
SPECIAL_TARGETS = {
    b"\x0crpz-passthru\x00": Action.ALLOW,
    b"\x08rpz-drop\x00": Action.DROP,
    b"\x0crpz-tcp-only\x00": Action.TCP_ONLY,
}
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


@dataclass
class ZoneReport:
    """What loading one zone found, for logs and ``sinkhole check``."""

    name: str
    file: str
    serial: int | None = None
    records: int = 0
    qname: int = 0
    client_ip: int = 0
    response_ip: int = 0
    nsdname: int = 0
    nsip: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "zone": self.name,
            "file": self.file,
            "serial": self.serial,
            "records": self.records,
            "qname_triggers": self.qname,
            "client_ip_triggers": self.client_ip,
            "response_ip_triggers": self.response_ip,
            "skipped_nsdname": self.nsdname,
            "skipped_nsip": self.nsip,
            "load_ms": round(self.seconds * 1000, 1),
        }


@dataclass
class LoadedZone:
    layer: PolicyLayer
    report: ZoneReport


def load_zone(zone: ZoneConfig, order: int = 0) -> LoadedZone:
    """Read and compile the zone ``zone`` names; ``order`` is its place among all layers.

    Raises PolicyError (file, line) for a broken zone. A zone kept by zone transfer
    (with primaries) whose copy does not exist yet is empty, with a warning.
    """
    started = time.monotonic()
    source = str(zone.file)
    if zone.primaries and not zone.file.exists():
        loaded = _Loader(zone.name, source, order).finish()
        loaded.report.warnings.append(
            f"zone {zone.name}: no copy in {source} yet: not enforced until the first transfer"
        )
        return loaded
    loader = _Loader(zone.name, source, order)
    loader.read_file(zone.file, zone.name, None, (), 0, 0)
    loaded = loader.finish()
    loaded.report.seconds = time.monotonic() - started
    return loaded


def parse_zone(text: str, origin: str, source: str = "<zone>", order: int = 0) -> LoadedZone:
    """A zone from text (``origin`` with or without its trailing dot); $INCLUDE paths are
    relative to the current directory."""
    started = time.monotonic()
    origin = origin.lower().rstrip(".") + "."
    loader = _Loader(origin, source, order)
    loader.read_text(text, source, Path.cwd(), origin, None, (), 0)
    loaded = loader.finish()
    loaded.report.seconds = time.monotonic() - started
    return loaded


def read_text(path: Path) -> str:
    """A zone file's text; ``.xz`` and ``.gz`` files are decompressed."""
    source = str(path)
    try:
        if path.suffix == ".xz":
            raw = lzma.decompress(path.read_bytes())
        elif path.suffix == ".gz":
            raw = gzip.decompress(path.read_bytes())
        else:
            raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read the zone file: {exc.strerror or exc}", source) from None
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as exc:
        raise PolicyError(f"cannot decompress the zone file: {exc}", source) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise PolicyError("not UTF-8 text; save the zone file as UTF-8", source, line) from None


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

    def _generate_line(self) -> None:
        self.line = self.tok.line_number
        self.in_record = True
        super()._generate_line()  # type: ignore[no-untyped-call]
        self.in_record = False


class _Loader:
    """Reads one zone (and its $INCLUDEs) into records by owner, then into a layer."""

    def __init__(self, origin: str, source: str, order: int) -> None:
        self.origin = origin  # lower case, trailing dot
        self.origin_name = dns.name.from_text(origin)
        self.origin_wire = self.origin_name.canonicalize().to_wire() or ROOT
        self.origin_len = len(self.origin_wire)
        self.source = source
        self.order = order
        self.owners: dict[bytes, Record | list[Record]] = {}
        self.records = 0
        self.serial: int | None = None

    # --- reading -----------------------------------------------------------------------

    def read_file(
        self,
        path: Path,
        origin: str,
        default_ttl: int | None,
        stack: tuple[Path, ...],
        depth: int,
        line: int,
    ) -> None:
        resolved = path.resolve()
        if resolved in stack:
            raise PolicyError(f"$INCLUDE loop: {path} is already being read", str(stack[-1]), line)
        self.read_text(
            read_text(path), str(path), path.parent, origin, default_ttl, (*stack, resolved), depth
        )

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
        if any(c in name for c in '\\"()'):
            return ""  # unusual: leave the records to dnspython
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
        path = Path(parts[1])
        if not path.is_absolute():
            path = base / path
        origin = _absolute(parts[2].lower(), current) if len(parts) == 3 else current
        if origin != self.origin and not origin.endswith("." + self.origin):
            raise PolicyError(
                f"$INCLUDE origin {origin} is outside the zone {self.origin}", source, index + 1
            )
        if not path.is_file():
            raise PolicyError(f"$INCLUDE file {str(path)!r} does not exist", source, index + 1)
        self.read_file(path, origin, ttl, stack, depth + 1, index + 1)

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
        start = dns.name.from_text(origin)
        reader.current_origin = start
        reader.last_name = start
        self._reader = reader
        try:
            reader.read()
        except dns.exception.DNSException as exc:
            file, line = reader.tok.where()
            message = str(exc)
            prefix = f"{file}:{line}: "
            if message.startswith(prefix):
                message = message[len(prefix) :]
            if reader.in_record:
                line = reader.line  # where the record starts, not where reading stopped
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

    # --- compiling -----------------------------------------------------------------------

    def finish(self) -> LoadedZone:
        name = self.origin
        zone_id = name.rstrip(".")
        info = PolicyInfo(
            id=zone_id, source=self.source, title=f"RPZ zone {zone_id}", reference=zone_id
        )
        report = ZoneReport(name, self.source, records=self.records)
        verdicts: dict[tuple[Action, int, Redirect | None], Verdict] = {}
        order = self.order

        def verdict(action: Action, ttl: int, redirect: Redirect | None) -> Verdict:
            key = (action, ttl, redirect)
            found = verdicts.get(key)
            if found is None:
                found = verdicts[key] = Verdict(
                    info, action, Answers((), (), ttl), order, "", EVERYONE, redirect
                )
            return found

        exact: dict[bytes, tuple[Verdict, int]] = {}
        below: dict[bytes, tuple[Verdict, int]] = {}
        lines: dict[bytes, int] = {}
        files: dict[bytes, str] = {}
        clients: list[IpEntry] = []
        responses: list[IpEntry] = []
        passthru_typos: list[str] = []
        main = self.source
        skipped_at = 1 << 62  # the first NSDNAME or NSIP record's line
        for owner, slot in self.owners.items():
            if owner == ROOT:
                continue  # the apex: SOA, NS
            if type(slot) is tuple:
                rtype, ttl, data, line, file = slot
                if rtype != wire.TYPE_CNAME:
                    action, redirect = Action.REDIRECT, Redirect(records=((rtype, data),))
                elif data == ROOT:
                    action, redirect = Action.NXDOMAIN, None  # most of every feed
                else:
                    action, redirect = self._cname_action(owner, data, passthru_typos, line, file)
            else:
                action, redirect, ttl, line, file = self._group(
                    owner,
                    slot,  # type: ignore[arg-type]
                    passthru_typos,
                )
            found = verdict(action, ttl, redirect)
            if b"rpz-" in owner[-16:]:
                kind = _trigger(owner)
                if kind is CLIENT_IP or kind is RESPONSE_IP:
                    entry = (self._network(owner, kind, line, file), found, line)
                    if kind is CLIENT_IP:
                        clients.append(entry)
                    else:
                        responses.append(entry)
                    continue
                if kind is NSDNAME or kind is NSIP:
                    if kind is NSDNAME:
                        report.nsdname += 1
                    else:
                        report.nsip += 1
                    skipped_at = min(skipped_at, line) if file == main else skipped_at
                    continue
            if owner[:2] == b"\x01*":
                below[owner[2:]] = (found, line)
            else:
                exact[owner] = (found, line)
            if file != main:
                files[owner] = file
        # A name and its wildcard with the same action (the usual pair) are one subtree entry.
        # Lines: the EXACT entry's in the low 32 bits, the wildcard's above (see PolicyLayer).
        report.qname = len(exact) + len(below)
        entries: list[tuple[bytes, Scope, Verdict]] = []
        for key, (found, line) in exact.items():
            under = below.pop(key, None)
            if under is None:
                entries.append((key, Scope.EXACT, found))
                lines[key] = line
                continue
            if under[0] is found:
                entries.append((key, Scope.SUBTREE, found))
            else:
                entries.append((key, Scope.EXACT, found))
                entries.append((key, Scope.BELOW, under[0]))
            lines[key] = line | under[1] << 32
        for key, (found, line) in below.items():
            entries.append((key, Scope.BELOW, found))
            lines[key] = line << 32
        report.client_ip = len(clients)
        report.response_ip = len(responses)
        report.serial = self.serial
        if report.nsdname or report.nsip:
            first = f" (the first at line {skipped_at})" if skipped_at < 1 << 62 else ""
            report.warnings.append(
                f"zone {name}: {report.nsdname} NSDNAME and {report.nsip} NSIP triggers "
                f"skipped{first}: a forwarder never sees the name servers of a name, so it "
                "cannot evaluate them"
            )
        if passthru_typos:
            report.warnings.append(
                f"zone {name}: {len(passthru_typos)} CNAMEs point into the zone at a special "
                f"name, like {passthru_typos[0]}: write the target with a trailing dot "
                "(rpz-passthru.) for the RPZ action; as written it is local data"
            )
        layer = PolicyLayer(
            name,
            self.source,
            CompiledPolicy.build(entries),
            ClientTriggers(clients) if clients else None,
            AddressTriggers(responses) if responses else None,
            lines,
            files,
        )
        return LoadedZone(layer, report)

    def _cname_action(
        self, owner: bytes, target: bytes, typos: list[str], line: int, file: str
    ) -> tuple[Action, Redirect | None]:
        if target == ROOT:
            return Action.NXDOMAIN, None
        if target == WILDCARD_ROOT:
            return Action.NODATA, None
        special = SPECIAL_TARGETS.get(target)
        if special is not None:
            return special, None
        if target == owner:
            return Action.ALLOW, None  # legacy PASSTHRU: a CNAME to its own relative name
        first = target[1 : 1 + target[0]] if target[0] else b""
        if first.startswith(b"rpz-"):
            if target[1 + target[0]] == 0:
                raise PolicyError(
                    f"unknown RPZ action {first.decode('ascii', 'replace')}.: use rpz-passthru., "
                    "rpz-drop. or rpz-tcp-only.",
                    file,
                    line,
                )
            if target[1 + target[0] :] == self.origin_wire and len(typos) < 1000:
                typos.append(f"{file}:{line}")
        return Action.REDIRECT, Redirect(records=((wire.TYPE_CNAME, target),))

    def _group(
        self, owner: bytes, records: list[Record], typos: list[str]
    ) -> tuple[Action, Redirect | None, int, int, str]:
        """The action of an owner with several records: one CNAME, or local data."""
        seen: dict[tuple[int, bytes], Record] = {}
        for record in records:
            seen.setdefault((record[0], record[2]), record)  # an exact repeat counts once
        unique = list(seen.values())
        cnames = [r for r in unique if r[0] == wire.TYPE_CNAME]
        first = unique[0]
        if cnames:
            others = [r for r in unique if r[0] != wire.TYPE_CNAME]
            if others:
                clash = max(cnames[0], others[0], key=lambda r: r[3])
                raise PolicyError(
                    f"{_owner_text(owner)} has a CNAME and other records; an RPZ rule is "
                    "either one CNAME (an action) or local data",
                    clash[4],
                    clash[3],
                )
            if len(cnames) > 1:
                raise PolicyError(
                    f"{_owner_text(owner)} has more than one CNAME; an RPZ rule has one action",
                    cnames[1][4],
                    cnames[1][3],
                )
            action, redirect = self._cname_action(owner, first[2], typos, first[3], first[4])
            return action, redirect, first[1], first[3], first[4]
        ttl = min(r[1] for r in unique)
        redirect = Redirect(records=tuple((r[0], r[2]) for r in unique))
        return Action.REDIRECT, redirect, ttl, first[3], first[4]

    def _network(self, owner: bytes, trigger: bytes, line: int, file: str) -> Network:
        labels = _labels(owner[: -len(trigger)])
        text = ".".join(labels)
        try:
            return ip_trigger(labels)
        except ValueError as exc:
            kind = _labels(trigger)[0]
            raise PolicyError(
                f"{text}.{kind} is not an IP trigger like 24.0.2.0.192.{kind} "
                f"(192.0.2.0/24) or 48.zz.db8.2001.{kind} (2001:db8::/48): {exc}",
                file,
                line,
            ) from None


def ip_trigger(labels: list[str]) -> Network:
    """The network of an IP trigger's labels: prefix length, then the address reversed
    (IPv4 octets, or IPv6 16-bit words with ``zz`` for the longest run of zeros)."""
    if len(labels) < 2 or not labels[0].isdigit():
        raise ValueError("it must start with a prefix length")
    length = int(labels[0])
    parts = labels[1:]
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        if length > 32:
            raise ValueError(f"prefix length {length} is longer than 32")
        address = ".".join(reversed(parts))
    else:
        if length > 128:
            raise ValueError(f"prefix length {length} is longer than 128")
        if parts.count("zz") > 1:
            raise ValueError("zz may stand only once")
        words = list(reversed(parts))
        if any(w != "zz" and not re.fullmatch(r"[0-9a-f]{1,4}", w) for w in words):
            raise ValueError("an IPv6 word must be 1 to 4 hex digits")
        if "zz" not in words and len(words) != 8:
            if all(w.isdigit() for w in words):
                raise ValueError("an IPv4 address needs 4 numbers")
            raise ValueError("an IPv6 address needs 8 words or zz")
        address = ":".join("" if w == "zz" else w for w in words)
        if words[0] == "zz":
            address = ":" + address
        if words[-1] == "zz":
            address += ":"
    network = ipaddress.ip_network(f"{address}/{length}", strict=True)
    return network


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


def _labels(name: bytes) -> list[str]:
    out = []
    pos = 0
    while pos < len(name) and name[pos]:
        out.append(name[pos + 1 : pos + 1 + name[pos]].decode("ascii", "replace"))
        pos += name[pos] + 1
    return out


def _trigger(owner: bytes) -> bytes | None:
    """The RPZ trigger label ``owner`` ends with (CLIENT_IP, RESPONSE_IP, NSDNAME, NSIP), or
    None for a QNAME trigger."""
    pos = 0
    while owner[pos]:
        if owner[pos] + pos + 2 == len(owner):  # the last label
            for kind in (CLIENT_IP, RESPONSE_IP, NSDNAME, NSIP):
                if owner[pos:] == kind:
                    return kind
            return None
        pos += owner[pos] + 1
    return None


def _owner_text(owner: bytes) -> str:
    return ".".join(_labels(owner)) or "@"


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
