"""Compiled policy: rules, verdicts and the name matcher (pure, no I/O).

Names are keys in wire form (lower-cased, root-terminated), so a lookup walks the
label suffixes of the query name and probes one dict per suffix: the cost grows
with the number of labels, not the number of rules.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from resolver import wire


class Action(enum.IntEnum):
    WARNING_PAGE = 1
    NXDOMAIN = 2
    NODATA = 3
    REFUSE = 4
    DROP = 5
    ALLOW = 6  # an exemption (RPZ: PASSTHRU): forwarded as usual
    REDIRECT = 7  # to given addresses, or to a name answered as a CNAME
    TCP_ONLY = 8  # RPZ rpz-tcp-only: over UDP answer TC=1, over TCP forward

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, text: str) -> Action:
        return cls[text.upper().replace("-", "_")]


ACTION_LABELS = tuple(a.label for a in Action)


class Scope(enum.IntEnum):
    """Which names a rule covers, relative to its name."""

    SUBTREE = 1  # the name and every name under it
    EXACT = 2  # the name alone ("=name")
    BELOW = 3  # only names under it ("*.name")


EDE_CODES = {
    "blocked": wire.EDE_BLOCKED,
    "censored": wire.EDE_CENSORED,
    "filtered": wire.EDE_FILTERED,
}


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """What a policy says about itself: who ordered the block, on what basis, and when."""

    id: str
    source: str
    title: str = ""
    authority: str = ""
    legal_basis: str = ""
    reference: str = ""
    ede: int = wire.EDE_BLOCKED
    contact: str = ""
    message: str = ""  # shown by the warning page
    effective_from: datetime | None = None  # timezone-aware; None: always
    expires: datetime | None = None  # timezone-aware; None: never

    def active(self, now: datetime) -> bool:
        """Whether the policy is enforced at ``now`` (timezone-aware)."""
        if self.effective_from is not None and now < self.effective_from:
            return False
        return self.expires is None or now < self.expires


@dataclass(frozen=True, slots=True)
class ClientScope:
    """Which clients an entry applies to: only ``include`` (when given), never ``exclude``."""

    include: tuple[Network, ...] = ()
    exclude: tuple[Network, ...] = ()

    def applies(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.include and not any(
            address in n for n in self.include if n.version == address.version
        ):
            return False
        return not any(address in n for n in self.exclude if n.version == address.version)

    @property
    def everyone(self) -> bool:
        return not self.include and not self.exclude


EVERYONE = ClientScope()


@dataclass(frozen=True, slots=True)
class Redirect:
    """Where the redirect action sends a name: addresses, or another name (a CNAME)."""

    ipv4: tuple[ipaddress.IPv4Address, ...] = ()
    ipv6: tuple[ipaddress.IPv6Address, ...] = ()
    cname: str = ""  # presentation form, no trailing dot


@dataclass(frozen=True, slots=True)
class Answers:
    """What the blocking answers contain: the warning page and the negative-answer TTL."""

    ipv4: tuple[ipaddress.IPv4Address, ...] = ()
    ipv6: tuple[ipaddress.IPv6Address, ...] = ()
    ttl: int = 60


COUNTS = struct.Struct("!HHHH")
SOA_MNAME = wire.text_to_name("sinkhole.invalid")
SOA_RNAME = wire.text_to_name("hostmaster.sinkhole.invalid")


class Verdict:
    """What to answer for the names one kind of entry covers.

    Every entry of a policy with the same action and reference shares one Verdict,
    so a million names cost a million dict keys, not a million objects. ``render``
    is on the hot path: the answer bytes after the question are built on first use
    per (query type, EDNS state) and kept, so a blocked query costs a header pack
    and a concatenation.
    """

    __slots__ = ("_tails", "action", "answers", "ede_text", "order", "policy")

    def __init__(
        self, policy: PolicyInfo, action: Action, answers: Answers, order: int, reference: str = ""
    ) -> None:
        self.policy = policy
        self.action = action
        self.answers = answers
        self.order = order  # the policy's position in the configuration
        self.ede_text = reference or policy.reference or policy.id
        self._tails: dict[tuple[int, int], tuple[int, bytes, bytes]] = {}

    @property
    def policy_id(self) -> str:
        return self.policy.id

    @property
    def rank(self) -> tuple[int, int]:
        """Higher wins at the same name: an exemption beats a block, then config order."""
        return (1 if self.action is Action.ALLOW else 0, -self.order)

    def render(self, query: wire.Query) -> bytes:
        mode = (2 if query.do else 1) if query.edns else 0
        key = (query.qtype, mode)
        tail = self._tails.get(key)
        if tail is None:
            tail = self._tails[key] = self._build_tail(query.qtype, mode)
        flags, counts, body = tail
        return (
            query.qid
            + wire.U16.pack(flags | (query.flags & (wire.RD | wire.CD)))
            + counts
            + query.question
            + body
        )

    def _build_tail(self, qtype: int, mode: int) -> tuple[int, bytes, bytes]:
        """(flags without RD/CD, section counts, the sections after the question)."""
        action = self.action
        ttl = self.answers.ttl
        answer = b""
        ancount = 0
        rcode = wire.NOERROR
        if action is Action.WARNING_PAGE:
            addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address] = ()
            if qtype == wire.TYPE_A:
                addresses = self.answers.ipv4
            elif qtype == wire.TYPE_AAAA:
                addresses = self.answers.ipv6
            for address in addresses:
                answer += wire.build_record(qtype, ttl, address.packed)
                ancount += 1
        elif action is Action.NXDOMAIN:
            rcode = wire.NXDOMAIN
        elif action is Action.REFUSE:
            rcode = wire.REFUSED
        authority = b""
        nscount = 0
        if ancount == 0 and action is not Action.REFUSE:
            soa = wire.build_soa_rdata(SOA_MNAME, SOA_RNAME, 1, ttl)
            authority = wire.build_record(wire.TYPE_SOA, ttl, soa)
            nscount = 1
        extra = b""
        arcount = 0
        if mode:
            ede = wire.build_ede(self.policy.ede, self.ede_text)
            extra = wire.build_opt(mode == 2, 0, ede)
            arcount = 1
        counts = COUNTS.pack(1, ancount, nscount, arcount)
        return wire.QR | wire.RA | rcode, counts, answer + authority + extra


class _Split:
    """A name where the verdict for the name itself differs from the one for names below."""

    __slots__ = ("below", "here")

    def __init__(self, here: Verdict | None, below: Verdict | None) -> None:
        self.here = here
        self.below = below


def _better(new: Verdict, old: Verdict | None) -> bool:
    return old is None or new.rank > old.rank


@dataclass
class CompiledPolicy:
    """Every entry of every policy, compiled into one table keyed by wire-form name.

    A value is a Verdict when it covers the name and everything under it (the
    common case), or a _Split when the name itself and the names below it differ.

    Precedence: the most specific matching name wins (the query name itself before
    any parent, a longer suffix before a shorter one); at the same name an
    exemption beats a block, and otherwise the policy listed first wins.
    """

    table: dict[bytes, Verdict | _Split] = field(default_factory=dict)
    entries: int = 0

    @classmethod
    def build(cls, entries: Iterable[tuple[bytes, Scope, Verdict]]) -> CompiledPolicy:
        table: dict[bytes, Verdict | _Split] = {}
        count = 0
        get = table.get
        for name, scope, verdict in entries:
            count += 1
            old = get(name)
            if old is None:
                if scope is Scope.SUBTREE:
                    table[name] = verdict
                elif scope is Scope.EXACT:
                    table[name] = _Split(verdict, None)
                else:
                    table[name] = _Split(None, verdict)
                continue
            if isinstance(old, Verdict):
                if scope is Scope.SUBTREE and not _better(verdict, old):
                    continue
                old = table[name] = _Split(old, old)
            if scope is not Scope.BELOW and _better(verdict, old.here):
                old.here = verdict
            if scope is not Scope.EXACT and _better(verdict, old.below):
                old.below = verdict
            if old.here is old.below and old.here is not None:
                table[name] = old.here
        return cls(table, count)

    def match(self, qname: bytes) -> Verdict | None:
        """The verdict for a wire-form, lower-cased name, or None when no entry covers it."""
        table = self.table
        hit = table.get(qname)
        if hit is not None:
            if type(hit) is Verdict:
                return hit
            if hit.here is not None:  # type: ignore[union-attr]
                return hit.here  # type: ignore[union-attr]
        pos = 0
        while True:
            n = qname[pos]
            if n == 0:
                return None
            pos += n + 1
            hit = table.get(qname[pos:])
            if hit is not None:
                if type(hit) is Verdict:
                    return hit
                if hit.below is not None:  # type: ignore[union-attr]
                    return hit.below  # type: ignore[union-attr]

    def locate(self, qname: bytes) -> tuple[Verdict | None, bytes]:
        """The verdict and the name of the entry that decided it (for logs and explanations)."""
        verdict = self.match(qname)
        if verdict is not None:
            for suffix in suffixes(qname):
                hit = self.table.get(suffix)
                if hit is verdict or (
                    isinstance(hit, _Split)
                    and verdict is (hit.here if suffix == qname else hit.below)
                ):
                    return verdict, suffix
        return verdict, b""

    def names(self) -> int:
        return len(self.table)


def suffixes(qname: bytes) -> Iterator[bytes]:
    """The wire name itself, then each parent, down to (not including) the root."""
    pos = 0
    while qname[pos]:
        yield qname[pos:]
        pos += qname[pos] + 1
