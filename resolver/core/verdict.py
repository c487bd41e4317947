"""Actions and verdicts: what a policy answers for the names it covers, and the answer bytes.

A Verdict is shared by every entry of a policy with the same action, reference,
client scope and redirect target; ``render`` builds the blocking answer to a query
(sans I/O, on the per-query path).
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

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
    authority_url: str = ""  # the authority's web address (the warning page's Link header)
    # Texts in other languages: (field, language tag, text), such as ("message", "ko", ...).
    # The plain fields above hold each field's default text (English when given).
    translations: tuple[tuple[str, str, str], ...] = ()

    def text(self, field: str, language: str) -> str:
        """``field`` (title, authority, legal_basis, message) in ``language``, else its
        default text."""
        for name, tag, text in self.translations:
            if name == field and tag == language:
                return text
        return str(getattr(self, field))

    def languages(self) -> frozenset[str]:
        """The language tags some field of the policy is written in."""
        return frozenset(tag for _, tag, _ in self.translations)

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


def unscoped(scope: ClientScope) -> bool:
    """The client test for a client in none of the networks scopes name: only the entries
    without a client scope apply to it."""
    return scope.everyone


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
