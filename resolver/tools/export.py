"""`sinkhole export-rpz`: the YAML policies as one standard RPZ zone, for other resolvers.

The zone says in RPZ what the compiled policy decides for a client that no client
scope singles out, at the moment of the export: for every name with an entry, the
records for the name itself (``name``) and for the names under it (``*.name``), so
``blocked.example`` becomes ``blocked.example`` and ``*.blocked.example``, ``=name``
only ``name``, ``*.name`` only ``*.name``. Precedence is already resolved: where
sinkhole lets the most specific entry win, the zone lists that entry's action, and
where a wildcard would be hidden by a more specific name (BIND and Unbound match
wildcards like DNS does, from the closest existing name), that name gets the
wildcard's action written out, so every resolver answers as sinkhole does.

Actions: warning-page as local data (A and AAAA of the warning page), nxdomain as
``CNAME .``, nodata as ``CNAME *.``, drop as ``CNAME rpz-drop.``, an exemption as
``CNAME rpz-passthru.``, tcp-only as ``CNAME rpz-tcp-only.``, redirect as local data
or a CNAME. ``refuse`` has no RPZ form: it is written as NXDOMAIN (a block stays a
block), with a warning. The policy id and reference go into comments (a header per
policy, one comment per record): a TXT record would be local data that clients see,
and a CNAME cannot share its owner with one. Entries with a client scope are left
out (RPZ cannot scope a QNAME trigger by client), with a warning; dated policies are
exported as they stand at the moment of the export.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import TextIO

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from resolver import __version__
from resolver.core import wire
from resolver.core.errors import SourceError
from resolver.core.matcher import CompiledPolicy
from resolver.core.verdict import Action, Verdict, unscoped
from resolver.sources.config import Config, default_config, load_config
from resolver.sources.policy_yaml import PolicyFile

DEFAULT_ORIGIN = "rpz.sinkhole.invalid."
CHILD = b"\x01\x00"  # a label no entry has: the name of "any name under" a name


def cmd_export_rpz(args: argparse.Namespace) -> int:
    from resolver.sources.snapshot import build_snapshot

    try:
        config = load_config(args.config) if args.config else default_config()
        origin = normalise_origin(args.origin)
        result = build_snapshot(replace(config, zones=()))
    except SourceError as exc:
        print(f"sinkhole: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"sinkhole: --origin: {exc}", file=sys.stderr)
        return 2
    warnings = write_zone(
        sys.stdout, result.snapshot.policy, result.policies, origin, config, int(time.time())
    )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def normalise_origin(text: str) -> str:
    name = text.strip().lower().rstrip(".")
    if not name:
        raise ValueError("the zone needs a name, like rpz.example")
    wire.text_to_name(name)  # checks label lengths
    return name + "."


def write_zone(
    out: TextIO,
    policy: CompiledPolicy,
    policies: tuple[PolicyFile, ...],
    origin: str,
    config: Config,
    serial: int,
) -> list[str]:
    """Write the zone to ``out``; return the warnings (what RPZ cannot say)."""
    warnings = _scope_warnings(policies)
    ttl = config.answers.ttl
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.write(
        f"; Response policy zone {origin} exported by sinkhole {__version__} on {stamp}\n"
        f"; from {config.source}: what its policies decide, for clients no client scope\n"
        "; singles out. Policies, in order (at the same name, the one listed first wins):\n"
    )
    for p in policies:
        info = p.info
        fields = [
            info.title,
            f"authority: {info.authority}" if info.authority else "",
            f"legal basis: {info.legal_basis}" if info.legal_basis else "",
            f"reference: {info.reference}" if info.reference else "",
            f"file: {info.source}",
        ]
        out.write(f";   {info.id}: " + " | ".join(_one_line(f) for f in fields if f) + "\n")
    out.write(
        f"$TTL {ttl}\n"
        f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {ttl}\n"
        "@ NS localhost.\n"
    )
    refused = 0
    for name, here, below in decisions(policy):
        for owner, verdict in ((name, here), ("*." + name, below)):
            if verdict is None:
                continue
            comment = f" ; {verdict.policy.id}"
            if verdict.ede_text != verdict.policy.id:
                comment += f": {_one_line(verdict.ede_text)}"
            if verdict.action is Action.REFUSE:
                refused += 1
                comment += " (refuse has no RPZ form: NXDOMAIN)"
            for rdtype, rdata in rpz_records(verdict):
                out.write(f"{owner} {verdict.answers.ttl} {rdtype} {rdata}{comment}\n")
    if refused:
        warnings.append(
            f"{refused} names with action refuse are exported as NXDOMAIN: RPZ has no refuse"
        )
    return warnings


def decisions(policy: CompiledPolicy) -> Iterator[tuple[str, Verdict | None, Verdict | None]]:
    """(name, verdict for the name, verdict for the names under it) for every name the zone
    needs, in zone order: every name with an entry and every name between it and the root
    that an entry's wildcard covers (a name that exists in the zone hides the wildcards
    above it from BIND and Unbound, so it gets their verdict written out)."""
    names: set[bytes] = set()
    for key in policy.table:
        pos = 0
        while key[pos] and key[pos:] not in names:
            names.add(key[pos:])
            pos += key[pos] + 1
    for name in sorted(names, key=_zone_order):
        here, _, _ = policy.match_client(name, unscoped)
        below, _, _ = policy.match_client(CHILD + name, unscoped)
        if here is not None or below is not None:
            yield wire.name_to_text(name), here, below


def rpz_records(verdict: Verdict) -> list[tuple[str, str]]:
    """The (type, data) of the RPZ records that say ``verdict``."""
    action = verdict.action
    if action in (Action.NXDOMAIN, Action.REFUSE):
        return [("CNAME", ".")]
    if action is Action.NODATA:
        return [("CNAME", "*.")]
    if action is Action.DROP:
        return [("CNAME", "rpz-drop.")]
    if action is Action.ALLOW:
        return [("CNAME", "rpz-passthru.")]
    if action is Action.TCP_ONLY:
        return [("CNAME", "rpz-tcp-only.")]
    target = verdict.redirect if action is Action.REDIRECT else verdict.answers
    if target is None:
        return [("CNAME", "*.")]
    out = [("A", str(a)) for a in target.ipv4] + [("AAAA", str(a)) for a in target.ipv6]
    if action is Action.REDIRECT and verdict.redirect is not None:
        cname = verdict.redirect.target()
        if cname:
            return [("CNAME", wire.name_to_text(cname) + ".")]
        for rtype, rdata in verdict.redirect.records:
            kind = dns.rdatatype.RdataType.make(rtype)
            rd = dns.rdata.from_wire(dns.rdataclass.IN, kind, rdata, 0, len(rdata))
            out.append((rd.rdtype.name, rd.to_text()))
    return out or [("CNAME", "*.")]  # no address to give: NODATA, as sinkhole answers


def _scope_warnings(policies: tuple[PolicyFile, ...]) -> list[str]:
    out = []
    now = datetime.now(UTC)
    for p in policies:
        info = p.info
        if not p.clients.everyone:
            out.append(
                f"policy {info.id!r} applies to some clients only: left out (RPZ cannot scope "
                "a QNAME trigger by client)"
            )
            continue
        scoped = sum(1 for e in p.entries if e.clients is not None and not e.clients.everyone)
        if scoped:
            out.append(f"policy {info.id!r}: {scoped} entries with a client scope left out")
        if not info.active(now):
            out.append(f"policy {info.id!r} is not in force now: left out")
        elif info.expires is not None:
            out.append(
                f"policy {info.id!r} expires on {info.expires.isoformat()}; the zone does not: "
                "export it again then"
            )
    return out


def _zone_order(name: bytes) -> tuple[bytes, ...]:
    labels = []
    pos = 0
    while name[pos]:
        labels.append(name[pos + 1 : pos + 1 + name[pos]])
        pos += name[pos] + 1
    return tuple(reversed(labels))


def _one_line(text: str) -> str:
    return " ".join(text.split())
