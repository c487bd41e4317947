"""Compiled policy: rules, verdicts and the name matcher (pure, no I/O).

Names are keys in wire form (lower-cased, root-terminated), so a lookup walks the
label suffixes of the query name and probes one dict per suffix: the cost grows
with the number of labels, not the number of rules.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from resolver.core import wire


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
    """Where the redirect action sends a name: addresses, or another name (a CNAME), or
    (RPZ local data) records of any type, each as (type, rdata in wire form).

    A CNAME target of the form ``*.name`` is rewritten per query: the answer's target is
    the query name followed by ``name`` (RPZ's wildcard CNAME, for walled gardens that
    log the names they are sent).
    """

    ipv4: tuple[ipaddress.IPv4Address, ...] = ()
    ipv6: tuple[ipaddress.IPv6Address, ...] = ()
    cname: str = ""  # presentation form, no trailing dot
    records: tuple[tuple[int, bytes], ...] = ()  # local data; a CNAME here is the only record

    def target(self) -> bytes:
        """The CNAME target in wire form (``\\x01*`` first for a per-query rewrite), or b""."""
        if self.cname:
            return wire.text_to_name(self.cname)
        for rtype, rdata in self.records:
            if rtype == wire.TYPE_CNAME:
                return rdata
        return b""


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
        "per_query",
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
        # A wildcard CNAME target depends on the query name: rendered per query, not kept.
        self.per_query = redirect is not None and redirect.target().startswith(b"\x01*")
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
            if self.per_query:
                tail = self._build_tail(query.qtype, mode, query.qname)
            else:
                tail = self._tails[key] = self._build_tail(query.qtype, mode)
        flags, counts, body = tail
        return (
            query.qid
            + wire.U16.pack(flags | (query.flags & (wire.RD | wire.CD)))
            + counts
            + query.question
            + body
        )

    def _build_tail(self, qtype: int, mode: int, qname: bytes = b"") -> tuple[int, bytes, bytes]:
        """(flags without RD/CD, section counts, the sections after the question).

        ``qname`` (wire form) is needed only for a per-query CNAME rewrite.
        """
        action = self.action
        ttl = self.answers.ttl
        answer = b""
        ancount = 0
        rcode = wire.NOERROR
        flags = wire.QR | wire.RA
        cname = self.redirect.target() if self.redirect is not None else b""
        if action is Action.REDIRECT and cname.startswith(b"\x01*"):
            cname = qname[:-1] + cname[2:]  # the query name, then the target's parent
            if len(cname) > wire.MAX_NAME:
                action = Action.NXDOMAIN  # the rewritten name cannot exist
        if action is Action.WARNING_PAGE or (action is Action.REDIRECT and not cname):
            target = self.redirect if action is Action.REDIRECT else self.answers
            addresses: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address] = ()
            if target is not None and qtype == wire.TYPE_A:
                addresses = target.ipv4
            elif target is not None and qtype == wire.TYPE_AAAA:
                addresses = target.ipv6
            for address in addresses:
                answer += wire.build_record(qtype, ttl, address.packed)
                ancount += 1
            if isinstance(target, Redirect):  # local data: the records of the asked type
                for rtype, rdata in target.records:
                    if rtype == qtype or qtype == wire.TYPE_ANY:
                        answer += wire.build_record(rtype, ttl, rdata)
                        ancount += 1
        elif action is Action.REDIRECT:
            answer = wire.build_record(wire.TYPE_CNAME, ttl, cname)
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


def _in_every_scope(scope: ClientScope) -> bool:
    return True


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
    has_response_ip: ClassVar[bool] = False  # RPZ response-IP triggers (LayeredPolicy only)

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
        verdict, name, _ = self.match_client(qname, _in_every_scope)
        return verdict, name

    def screen(
        self,
        targets: Sequence[bytes],
        addresses: Sequence[bytes] = (),
        applies: Callable[[ClientScope], bool] = _everyone,
    ) -> tuple[Verdict | None, bool]:
        """The verdict for an upstream answer whose CNAME chain runs through ``targets`` (wire
        names, in chain order), and whether it depended on the client or the clock.

        For a query name that no entry matched; the first target an entry covers decides.
        ``addresses`` (the answer's A and AAAA data) matter only to response-IP triggers.
        """
        depends = False
        for target in targets:
            verdict, _, late = self.match_client(target, applies)
            depends = depends or late
            if verdict is not None:
                return verdict, depends
        return None, depends

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


# --- layers: the YAML policies, then each RPZ zone in order -------------------------------

IPV4_MAPPED = 0xFFFF << 32


def mapped(network: Network) -> tuple[int, int]:
    """A network as (address, prefix length) in the IPv6 space, IPv4 in its mapped form."""
    if network.version == 4:
        return IPV4_MAPPED | int(network.network_address), network.prefixlen + 96
    return int(network.network_address), network.prefixlen


IpEntry = tuple[Network, Verdict, int]  # a trigger's network, its verdict, its line


class AddressTriggers:
    """Response-IP triggers (RPZ ``rpz-ip``) of one zone: an A or AAAA in an upstream answer
    inside a listed network. The longest matching prefix wins, then the smallest network
    address; IPv4 is matched in its IPv4-mapped form, so a /24 compares as a /120."""

    __slots__ = ("_tables", "entries")

    def __init__(self, entries: Iterable[IpEntry]) -> None:
        self.entries = tuple(entries)
        by_length: dict[int, dict[int, tuple[int, int]]] = {}
        for index, (network, _, _) in enumerate(self.entries):
            value, length = mapped(network)
            table = by_length.setdefault(length, {})
            table.setdefault(value >> (128 - length), (value, index))  # a repeat: the first wins
        self._tables = tuple((128 - n, by_length[n]) for n in sorted(by_length, reverse=True))

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, addresses: Iterable[bytes]) -> IpEntry | None:
        """The trigger for ``addresses`` (4 or 16 octets each), or None."""
        values = [
            int.from_bytes(a) | (IPV4_MAPPED if len(a) == 4 else 0)
            for a in addresses
            if len(a) in (4, 16)
        ]
        if not values:
            return None
        for shift, table in self._tables:
            best: tuple[int, int] | None = None
            for value in values:
                hit = table.get(value >> shift)
                if hit is not None and (best is None or hit[0] < best[0]):
                    best = hit
            if best is not None:
                return self.entries[best[1]]
        return None


class ClientTriggers:
    """Client-IP triggers (RPZ ``rpz-client-ip``) of one zone: every query from a client in a
    listed network gets the trigger's action; the longest prefix wins, then the smallest
    address. Tested through the engine's memoised client-scope check, so a client in none
    of the networks costs one lookup per query."""

    __slots__ = ("any", "candidates", "entries", "ranked")

    dynamic = True

    def __init__(self, entries: Iterable[IpEntry]) -> None:
        self.entries = tuple(entries)
        self.ranked = tuple(sorted(self.entries, key=lambda e: (-mapped(e[0])[1], mapped(e[0])[0])))
        self.candidates = tuple(
            (ClientScope(include=(net,)), verdict) for net, verdict, _ in self.ranked
        )
        self.any = ClientScope(include=tuple(net for net, _, _ in self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def match_client(
        self, qname: bytes, applies: Callable[[ClientScope], bool] = _everyone
    ) -> tuple[Verdict | None, bytes, bool]:
        if applies(self.any):
            for scope, verdict in self.candidates:
                if applies(scope):
                    return verdict, b"", True
        return None, b"", True

    def find(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> IpEntry | None:
        """The trigger for a client address, or None."""
        for entry in self.ranked:
            if entry[0].version == address.version and address in entry[0]:
                return entry
        return None


@dataclass(frozen=True, eq=False)
class PolicyLayer:
    """One layer of the policy: the YAML policies, or one RPZ zone.

    ``lines`` gives the lines of the QNAME triggers by name (wire form): the ``name``
    trigger's line in the low 32 bits, the ``*.name`` trigger's above them (one int per
    name keeps a large zone's lines small). ``files`` names the file of the owners read
    from an $INCLUDEd file, by owner (``\\x01*`` first for a wildcard).
    """

    name: str  # "policies", or the zone's origin (trailing dot)
    source: str  # the zone file; "" for the YAML policies
    qname: CompiledPolicy
    client_ip: ClientTriggers | None = None
    response_ip: AddressTriggers | None = None
    lines: Mapping[bytes, int] = field(default_factory=dict)
    files: Mapping[bytes, str] = field(default_factory=dict)

    def where(self, name: bytes, scope: Scope) -> tuple[str, int]:
        """File and line of the QNAME trigger for wire ``name`` (its EXACT or BELOW entry)."""
        key = b"\x01*" + name if scope is Scope.BELOW else name
        lines = self.lines.get(name, 0)
        line = lines >> 32 if scope is Scope.BELOW else lines & 0xFFFFFFFF
        return self.files.get(key, self.source), line


@dataclass(frozen=True)
class Decision:
    """Which trigger of which layer decided, for ``explain``."""

    verdict: Verdict
    layer: PolicyLayer
    trigger: str  # "client-ip" or "qname"
    name: bytes = b""  # the QNAME trigger's name (wire form)
    scope: Scope = Scope.SUBTREE
    network: Network | None = None  # the client-IP trigger's network
    file: str = ""
    line: int = 0


class LayeredPolicy(CompiledPolicy):
    """Several layers in order: the YAML policies first, then each RPZ zone as configured.

    The first layer with a verdict decides; an exemption (RPZ's PASSTHRU) is a verdict too,
    so it stops the evaluation. Within a zone the triggers go as the RPZ draft orders them:
    client IP, then query name, then (on the upstream's answer, see ``screen``) the names of
    its CNAME chain and its addresses. With one layer the snapshot holds the CompiledPolicy
    itself, so this class only costs anything when zones are configured. ``table`` is empty:
    the tables are the layers'.
    """

    def __init__(self, layers: Sequence[PolicyLayer]) -> None:
        compiled = tuple(layer.qname for layer in layers)
        super().__init__(
            {},
            sum(c.entries for c in compiled),
            any(c.dynamic for c in compiled) or any(layer.client_ip for layer in layers),
            tuple(v for c in compiled for v in c.dated),
        )
        self.layers = tuple(layers)
        self._compiled = compiled
        stages: list[ClientTriggers | CompiledPolicy] = []
        for layer in layers:
            if layer.client_ip:
                stages.append(layer.client_ip)
            stages.append(layer.qname)
        self._stages = tuple(stages)
        self._responses = tuple((layer.qname, layer.response_ip or None) for layer in layers)
        self._has_response_ip = any(layer.response_ip for layer in layers)

    @property
    def has_response_ip(self) -> bool:  # type: ignore[override]
        return self._has_response_ip

    def match(self, qname: bytes) -> Verdict | None:
        for compiled in self._compiled:
            verdict = compiled.match(qname)
            if verdict is not None:
                return verdict
        return None

    def match_client(
        self, qname: bytes, applies: Callable[[ClientScope], bool] = _everyone
    ) -> tuple[Verdict | None, bytes, bool]:
        depends = False
        for stage in self._stages:
            verdict, name, late = stage.match_client(qname, applies)
            depends = depends or late
            if verdict is not None:
                return verdict, name, depends
        return None, b"", depends

    def locate(self, qname: bytes) -> tuple[Verdict | None, bytes]:
        """The QNAME verdict for a client every scope includes (client-IP triggers skipped)."""
        for compiled in self._compiled:
            verdict, name = compiled.locate(qname)
            if verdict is not None:
                return verdict, name
        return None, b""

    def decide(
        self,
        qname: bytes,
        applies: Callable[[ClientScope], bool] = _everyone,
        client: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
    ) -> Decision | None:
        """Which layer and trigger decide ``qname`` for a client (before forwarding)."""
        for layer in self.layers:
            if layer.client_ip and client is not None:
                entry = layer.client_ip.find(client)
                if entry is not None:
                    network, hit, line = entry
                    return Decision(
                        hit, layer, "client-ip", network=network, file=layer.source, line=line
                    )
            verdict, name, _ = layer.qname.match_client(qname, applies)
            if verdict is not None:
                scope = Scope.EXACT if name == qname else Scope.BELOW
                file, line = layer.where(name, scope)
                return Decision(verdict, layer, "qname", name, scope, file=file, line=line)
        return None

    def screen(
        self,
        targets: Sequence[bytes],
        addresses: Sequence[bytes] = (),
        applies: Callable[[ClientScope], bool] = _everyone,
    ) -> tuple[Verdict | None, bool]:
        """Layer by layer: the CNAME chain's names against QNAME triggers, then the answer's
        addresses against response-IP triggers."""
        depends = False
        for compiled, response_ip in self._responses:
            for target in targets:
                verdict, _, late = compiled.match_client(target, applies)
                depends = depends or late
                if verdict is not None:
                    return verdict, depends
            if response_ip is not None and addresses:
                entry = response_ip.find(addresses)
                if entry is not None:
                    return entry[1], depends
        return None, depends

    def set_clock(self, now: datetime) -> list[tuple[PolicyInfo, bool]]:
        changed: list[tuple[PolicyInfo, bool]] = []
        for compiled in self._compiled:
            changed.extend(compiled.set_clock(now))
        return changed

    def next_change(self, now: datetime) -> datetime | None:
        moments = [m for c in self._compiled if (m := c.next_change(now)) is not None]
        return min(moments, default=None)

    def names(self) -> int:
        return sum(c.names() for c in self._compiled) + sum(
            len(layer.client_ip or ()) + len(layer.response_ip or ()) for layer in self.layers
        )


def suffixes(qname: bytes) -> Iterator[bytes]:
    """The wire name itself, then each parent, down to (not including) the root."""
    pos = 0
    while qname[pos]:
        yield qname[pos:]
        pos += qname[pos] + 1
