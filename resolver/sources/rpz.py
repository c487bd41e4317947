"""RPZ zones (Response Policy Zones, draft-vixie-dnsop-dns-rpz): zone files in, policy layers out.

The zone file is read by resolver.sources.zonefile into records by owner; this module
gives them their RPZ meaning.

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

import ipaddress
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from resolver.core import wire
from resolver.core.errors import PolicyError
from resolver.core.layers import AddressTriggers, ClientTriggers, IpEntry, PolicyLayer
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import EVERYONE, Action, Answers, Network, PolicyInfo, Redirect, Verdict
from resolver.sources.config_sections import ZoneConfig
from resolver.sources.zonefile import ROOT, Record, ZoneReader

CLIENT_IP = b"\x0drpz-client-ip\x00"
RESPONSE_IP = b"\x06rpz-ip\x00"
NSDNAME = b"\x0brpz-nsdname\x00"
NSIP = b"\x08rpz-nsip\x00"

WILDCARD_ROOT = b"\x01*\x00"
SPECIAL_TARGETS = {
    b"\x0crpz-passthru\x00": Action.ALLOW,
    b"\x08rpz-drop\x00": Action.DROP,
    b"\x0crpz-tcp-only\x00": Action.TCP_ONLY,
}


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
    (with primaries) whose copy does not exist yet is empty, with a warning. An
    $INCLUDE reads from the zone file's directory or the zone's ``include_dirs``.
    """
    started = time.monotonic()
    source = str(zone.file)
    folders = (zone.file.parent, *zone.include_dirs)
    allowed = tuple(Path(os.path.realpath(folder)) for folder in folders)
    reader = ZoneReader(zone.name, allowed, zone.max_size)
    if zone.primaries and not zone.file.exists():
        loaded = _Compiler(reader, source, order).finish()
        loaded.report.warnings.append(
            f"zone {zone.name}: no copy in {source} yet: not enforced until the first transfer"
        )
        return loaded
    reader.read_file(zone.file, zone.name, None, (), 0, 0)
    loaded = _Compiler(reader, source, order).finish()
    loaded.report.seconds = time.monotonic() - started
    return loaded


def parse_zone(
    text: str,
    origin: str,
    source: str = "<zone>",
    order: int = 0,
    include_dirs: tuple[Path, ...] | None = None,
) -> LoadedZone:
    """A zone from text (``origin`` with or without its trailing dot); $INCLUDE paths are
    relative to the current directory, and read from ``include_dirs`` (by default the
    current directory) and below."""
    started = time.monotonic()
    origin = origin.lower().rstrip(".") + "."
    folders = include_dirs if include_dirs is not None else (Path.cwd(),)
    reader = ZoneReader(origin, tuple(Path(os.path.realpath(f)) for f in folders))
    reader.read_text(text, source, Path.cwd(), origin, None, (), 0)
    loaded = _Compiler(reader, source, order).finish()
    loaded.report.seconds = time.monotonic() - started
    return loaded


class _Compiler:
    """The records a ZoneReader found, turned into a policy layer."""

    def __init__(self, reader: ZoneReader, source: str, order: int) -> None:
        self.origin = reader.origin
        self.origin_wire = reader.origin_wire
        self.owners = reader.owners
        self.records = reader.records
        self.serial = reader.serial
        self.source = source
        self.order = order

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
