"""Compiled policy: rules, verdicts and the name matcher (pure, no I/O).

Names are keys in wire form (lower-cased, root-terminated), so a lookup walks the
label suffixes of the query name and probes one dict per suffix: the cost grows
with the number of labels, not the number of rules.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable, Iterable, Iterator
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

    Every entry of a policy with the same action, reference, client scope and
    redirect target shares one Verdict, so a million names cost a million dict
    keys, not a million objects. ``render`` is on the hot path: the answer bytes
    after the question are built on first use per (query type, EDNS state) and
    kept, so a blocked query costs a header pack and a concatenation.
    """

    __slots__ = (
        "_tails",
        "action",
        "answers",
        "dated",
        "ede_text",
        "enabled",
        "order",
        "policy",
        "redirect",
        "scope",
    )

    def __init__(
        self,
        policy: PolicyInfo,
        action: Action,
        answers: Answers,
        order: int,
        reference: str = "",
        scope: ClientScope = EVERYONE,
        redirect: Redirect | None = None,
    ) -> None:
        self.policy = policy
        self.action = action
        self.answers = answers
        self.order = order  # the policy's position in the configuration
        self.ede_text = reference or policy.reference or policy.id
        self.scope = scope
        self.redirect = redirect
        self.dated = policy.effective_from is not None or policy.expires is not None
        self.enabled = True  # switched by CompiledPolicy.set_clock for dated policies
        self._tails: dict[tuple[int, int], tuple[int, bytes, bytes]] = {}

    @property
    def policy_id(self) -> str:
        return self.policy.id

    @property
    def static(self) -> bool:
        """Applies to every client at every moment: no scope, no dates."""
        return self.scope.everyone and not self.dated

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
        flags = wire.QR | wire.RA
        if action is Action.WARNING_PAGE or (action is Action.REDIRECT and not self._cname):
            target = self.redirect if action is Action.REDIRECT else self.answers
            addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address] = ()
            if target is not None and qtype == wire.TYPE_A:
                addresses = target.ipv4
            elif target is not None and qtype == wire.TYPE_AAAA:
                addresses = target.ipv6
            for address in addresses:
                answer += wire.build_record(qtype, ttl, address.packed)
                ancount += 1
        elif action is Action.REDIRECT:
            answer = wire.build_record(wire.TYPE_CNAME, ttl, wire.text_to_name(self._cname))
            ancount = 1
        elif action is Action.TCP_ONLY:
            flags |= wire.TC  # over UDP; over TCP the engine forwards instead
        elif action is Action.NXDOMAIN:
            rcode = wire.NXDOMAIN
        elif action is Action.REFUSE:
            rcode = wire.REFUSED
        authority = b""
        nscount = 0
        if ancount == 0 and action is not Action.REFUSE and action is not Action.TCP_ONLY:
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
        return flags | rcode, counts, answer + authority + extra

    @property
    def _cname(self) -> str:
        return self.redirect.cname if self.redirect is not None else ""


class _Choice:
    """Candidates at one name that depend on the client or the clock, best first.

    The first candidate that is enabled (its policy in force) and applies to the
    client decides; when none does, matching goes on to the parent names.
    """

    __slots__ = ("candidates",)

    def __init__(self, candidates: tuple[Verdict, ...]) -> None:
        self.candidates = candidates

    def pick(self, applies: Callable[[ClientScope], bool]) -> Verdict | None:
        for verdict in self.candidates:
            if verdict.enabled and (verdict.scope.everyone or applies(verdict.scope)):
                return verdict
        return None


Side = Verdict | _Choice | None


class _Split:
    """A name where the name itself and the names below it are decided differently."""

    __slots__ = ("below", "here")

    def __init__(self, here: Side, below: Side) -> None:
        self.here = here
        self.below = below


def _finish(candidates: list[Verdict]) -> Side:
    """The best candidate, or a _Choice when the best ones depend on client or clock."""
    if not candidates:
        return None
    ranked = sorted(candidates, key=lambda v: v.rank, reverse=True)  # stable: first entry wins
    for i, verdict in enumerate(ranked):
        if verdict.static:  # always applies: nothing ranked below it can win
            ranked = ranked[: i + 1]
            break
    if len(ranked) == 1 and ranked[0].static:
        return ranked[0]
    return _Choice(tuple(ranked))


def _everyone(scope: ClientScope) -> bool:
    return scope.everyone


@dataclass
class CompiledPolicy:
    """Every entry of every policy, compiled into one table keyed by wire-form name.

    A value is a Verdict when it covers the name and everything under it for every
    client (the common case), or a _Split when the name itself and the names below
    it are decided differently or by client scope and dates (_Choice).

    Precedence: the most specific matching name wins (the query name itself before
    any parent, a longer suffix before a shorter one); at the same name an
    exemption beats a block, and otherwise the policy listed first wins. Client
    scopes and dates are applied before matching: an entry that does not apply to
    the client, or whose policy is not in force, is as if it were not there.
    """

    table: dict[bytes, Verdict | _Split] = field(default_factory=dict)
    entries: int = 0
    dynamic: bool = False  # some answers depend on the client or the clock
    dated: tuple[Verdict, ...] = ()

    @classmethod
    def build(cls, entries: Iterable[tuple[bytes, Scope, Verdict]]) -> CompiledPolicy:
        table: dict[bytes, Verdict | _Split] = {}
        building: list[tuple[bytes, _Split]] = []  # names whose candidates are collected
        dated: dict[int, Verdict] = {}
        count = 0
        get = table.get
        for name, scope, verdict in entries:
            count += 1
            if verdict.dated:
                dated[id(verdict)] = verdict
            old = get(name)
            if old is None and scope is Scope.SUBTREE and verdict.static:
                table[name] = verdict
                continue
            if type(old) is _Split:
                node = old
            else:
                node = _Split([], [])  # type: ignore[arg-type]
                if old is not None:
                    node.here.append(old)  # type: ignore[union-attr]
                    node.below.append(old)  # type: ignore[union-attr]
                table[name] = node
                building.append((name, node))
            if scope is not Scope.BELOW:
                node.here.append(verdict)  # type: ignore[union-attr]
            if scope is not Scope.EXACT:
                node.below.append(verdict)  # type: ignore[union-attr]
        dynamic = False
        for name, node in building:
            node.here = _finish(node.here)  # type: ignore[arg-type]
            node.below = _finish(node.below)  # type: ignore[arg-type]
            dynamic = dynamic or isinstance(node.here, _Choice) or isinstance(node.below, _Choice)
            if node.here is node.below and isinstance(node.here, Verdict):
                table[name] = node.here
        return cls(table, count, dynamic, tuple(dated.values()))

    def match(self, qname: bytes) -> Verdict | None:
        """The verdict for a wire-form, lower-cased name, or None when no entry covers it.

        For tables that are not ``dynamic``; otherwise use match_client.
        """
        table = self.table
        hit = table.get(qname)
        if hit is not None:
            if type(hit) is Verdict:
                return hit
            if hit.here is not None:  # type: ignore[union-attr]
                return hit.here  # type: ignore[union-attr,return-value]
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
                    return hit.below  # type: ignore[union-attr,return-value]

    def match_client(
        self, qname: bytes, applies: Callable[[ClientScope], bool] = _everyone
    ) -> tuple[Verdict | None, bytes, bool]:
        """The verdict for ``qname`` for a client (``applies`` says which scopes include it).

        Returns the verdict, the name of the entry that decided, and whether the
        outcome depended on the client or the clock (such answers are not replayed).
        """
        table = self.table
        depends = False
        suffix = qname
        pos = 0
        while True:
            hit = table.get(suffix)
            if hit is not None:
                side: Side = (
                    hit if type(hit) is Verdict else hit.here if pos == 0 else hit.below  # type: ignore[union-attr]
                )
                if type(side) is _Choice:
                    depends = True
                    side = side.pick(applies)
                if side is not None:
                    return side, suffix, depends  # type: ignore[return-value]
            n = qname[pos]
            if n == 0:
                return None, b"", depends
            pos += n + 1
            suffix = qname[pos:]

    def locate(self, qname: bytes) -> tuple[Verdict | None, bytes]:
        """The verdict (for a client every scope includes) and the deciding entry's name."""
        verdict, name, _ = self.match_client(qname, lambda scope: True)
        return verdict, name

    def set_clock(self, now: datetime) -> list[tuple[PolicyInfo, bool]]:
        """Enable the dated verdicts whose policy is in force at ``now``; the policies that
        changed, with their new state."""
        changed: dict[str, tuple[PolicyInfo, bool]] = {}
        for verdict in self.dated:
            active = verdict.policy.active(now)
            if verdict.enabled != active:
                verdict.enabled = active
                changed[verdict.policy.id] = (verdict.policy, active)
        return list(changed.values())

    def next_change(self, now: datetime) -> datetime | None:
        """The next moment a dated policy comes into force or expires."""
        moments = [
            moment
            for verdict in self.dated
            for moment in (verdict.policy.effective_from, verdict.policy.expires)
            if moment is not None and moment > now
        ]
        return min(moments, default=None)

    def names(self) -> int:
        return len(self.table)


def suffixes(qname: bytes) -> Iterator[bytes]:
    """The wire name itself, then each parent, down to (not including) the root."""
    pos = 0
    while qname[pos]:
        yield qname[pos:]
        pos += qname[pos] + 1
