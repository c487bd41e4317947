"""What a compliant resolver answers, and how one answer is judged (pure).

Four kinds of name are checked:

- a blocked name must get the answer its policy mandates (``Blocked``): the warning
  page's address, NXDOMAIN, NODATA, REFUSED, no answer for drop, the redirect target;
- an exempted name must not get the answer of the block it is exempted from
  (``Exempt``). Its rcode alone proves nothing (a name that does not exist upstream
  gets NXDOMAIN whether blocked or not), so it is judged by the block's *signature*:
  the policy's EDE code and text, its warning page's addresses, its redirect's CNAME
  or addresses;
- a name of an allowed list must carry no block signature at all (``NotBlocked``):
  over-blocking is a violation;
- a name of a register audited as published (``Listed``) must get the answer the
  auditor expects: a given warning page, NXDOMAIN, NODATA (any one of those given), or
  any answer that is a block.

Every judgement says how it was made (``how``), in a phrase without per-answer data,
so judgements can be tallied. A check that cannot be made (no answer, an error, a
REFUSED with no block label: the server may not serve this client) is an ``error``,
not a violation.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Protocol

from resolver.core import wire
from resolver.core.verdict import Action, Answers, Redirect, Verdict
from resolver.tools.dnsanswer import BLOCK_EDE, TYPES, Answer, Outcome, ede_text

OK, VIOLATION, ERROR = "ok", "violation", "error"


@dataclass(frozen=True)
class Judgement:
    status: str  # OK, VIOLATION or ERROR
    how: str  # how the answer was judged (no per-answer data: judgements are tallied)


def _unanswered(outcome: Outcome, refused_is_block: bool = False) -> Judgement | None:
    """The judgement for an outcome that cannot be judged on its merits, or None."""
    if outcome.timeout:
        return Judgement(ERROR, "could not check: no answer in time")
    answer = outcome.answer
    if answer is None:
        return Judgement(ERROR, "could not check: the query failed")
    if answer.rcode == wire.REFUSED and not refused_is_block and answer.block_ede() is None:
        return Judgement(
            ERROR, "could not check: REFUSED with no block EDE (does the server serve us?)"
        )
    return None


@dataclass(frozen=True)
class Signature:
    """What marks an answer as a block's: addresses, CNAME targets, EDEs."""

    addresses: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()  # lower case, no trailing dot
    edes: frozenset[tuple[int, str]] = frozenset()
    any_block_ede: bool = False  # any EDE 15, 16 or 17, whatever its text
    sinks: bool = False  # 0.0.0.0, ::, loopback addresses (hosts-file style blocking)

    def __or__(self, other: Signature) -> Signature:
        return Signature(
            self.addresses | other.addresses,
            self.targets | other.targets,
            self.edes | other.edes,
            self.any_block_ede or other.any_block_ede,
            self.sinks or other.sinks,
        )

    def found(self, answer: Answer) -> str | None:
        """The part of the signature ``answer`` carries, described, or None."""
        for code, text in answer.ede:
            if (code, text) in self.edes or (self.any_block_ede and code in BLOCK_EDE):
                return ede_text(code, text)
        for record in answer.records:
            if record.rtype in (wire.TYPE_A, wire.TYPE_AAAA):
                if record.data in self.addresses:
                    return f"the block's address {record.data}"
                if self.sinks and _sink(record.data):
                    return f"the sink address {record.data}"
            elif record.rtype == wire.TYPE_CNAME:
                target = record.data.rstrip(".").lower()
                if target in self.targets:
                    return f"the block's CNAME {target}."
        return None

    def text(self) -> str:
        parts = [ede_text(code, text) for code, text in sorted(self.edes)]
        if self.any_block_ede:
            parts.append("any EDE 15-17")
        parts.extend(sorted(self.addresses))
        parts.extend(f"CNAME {t}." for t in sorted(self.targets))
        if self.sinks:
            parts.append("sink addresses")
        return ", ".join(parts) or "nothing"


def _sink(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_unspecified or ip.is_loopback


def _negative_note(answer: Answer, signature: Signature) -> str:
    """For an rcode-only answer: does it carry the policy's EDE?"""
    found = signature.found(answer)
    if found is not None:
        return f", with {found}"
    return ", without the policy's EDE (a name that does not exist gets the same)"


@dataclass(frozen=True)
class Mandate:
    """The answer a policy mandates for a name: what a compliant resolver sends."""

    action: Action
    policy: str
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    cname: str = ""  # redirect to a name: lower case, no trailing dot
    ede: int = wire.EDE_BLOCKED
    ede_text: str = ""

    def addresses(self, qtype: str) -> tuple[str, ...]:
        return self.ipv4 if qtype == "A" else self.ipv6

    @property
    def gives_addresses(self) -> bool:
        return self.action is Action.WARNING_PAGE or (
            self.action is Action.REDIRECT and not self.cname
        )

    @property
    def signature(self) -> Signature:
        return Signature(
            frozenset(self.ipv4 + self.ipv6) if self.gives_addresses else frozenset(),
            frozenset({self.cname}) if self.cname else frozenset(),
            frozenset({(self.ede, self.ede_text)}),
        )

    def describe(self, qtype: str, transport: str) -> str:
        action = self.action
        if action is Action.DROP:
            return "no answer (dropped)"
        if action is Action.TCP_ONLY:
            return "TC=1 (retry over TCP)" if transport == "udp" else "any answer (forwarded)"
        if action is Action.NXDOMAIN:
            return "NXDOMAIN"
        if action is Action.REFUSE:
            return "REFUSED"
        if action is Action.REDIRECT and self.cname:
            return f"NOERROR CNAME {self.cname}."
        if self.gives_addresses:
            found = self.addresses(qtype)
            if found:
                return f"NOERROR {qtype} {' '.join(sorted(found))}"
        return "NODATA (NOERROR, no answer)"

    def _what(self) -> str:
        if self.action is Action.WARNING_PAGE:
            return "the warning page"
        if self.action is Action.REDIRECT:
            return "the redirect's CNAME" if self.cname else "the redirect's addresses"
        return self.describe("A", "tcp")

    def judge(self, qtype: str, transport: str, outcome: Outcome) -> Judgement:
        """Whether ``outcome`` is the mandated answer, and how that was judged."""
        action = self.action
        if action is Action.DROP:
            if outcome.timeout:
                return Judgement(OK, "as mandated: no answer (dropped)")
            if outcome.answer is None:
                return Judgement(ERROR, "could not check: the query failed")
            return Judgement(VIOLATION, "answered, but the policy drops the query")
        unanswered = _unanswered(outcome, refused_is_block=action is Action.REFUSE)
        if unanswered is not None:
            return unanswered
        answer = outcome.answer
        assert answer is not None
        if action is Action.TCP_ONLY:
            if transport == "tcp" or answer.truncated:
                return Judgement(OK, f"as mandated: {self.describe(qtype, transport)}")
            return Judgement(VIOLATION, "not truncated over UDP")
        if self.cname and self.cname in answer.targets() and not answer.has(TYPES[qtype]):
            return Judgement(
                VIOLATION,
                f"a bare CNAME {self.cname}. with no {qtype} record: a client cannot reach "
                "the target (the redirect must be followed)",
            )
        if self.met_by(qtype, answer):
            how = f"as mandated: {self._what()}"
            if (self.gives_addresses and self.addresses(qtype)) or self.cname:
                return Judgement(OK, how)
            return Judgement(OK, how + _negative_note(answer, self.signature))
        return Judgement(VIOLATION, f"not {self._what()}")

    def met_by(self, qtype: str, answer: Answer) -> bool:
        action = self.action
        rcode = answer.rcode
        if action is Action.NXDOMAIN:
            return rcode == wire.NXDOMAIN
        if action is Action.REFUSE:
            return rcode == wire.REFUSED
        if rcode != wire.NOERROR:
            return False
        if self.cname:  # followed: the CNAME, then the target's own records of the type
            return self.cname in answer.targets() and answer.has(TYPES[qtype])
        if self.gives_addresses and self.addresses(qtype):
            return answer.addresses(TYPES[qtype]) == frozenset(self.addresses(qtype))
        return not answer.has(TYPES[qtype])

    @property
    def negative(self) -> bool:
        """A negative answer: an upstream may give the same for a name that does not exist."""
        return self.action in (Action.NXDOMAIN, Action.NODATA, Action.REFUSE) or (
            self.gives_addresses and not (self.ipv4 and self.ipv6)
        )


def mandate_of(verdict: Verdict, qname: str) -> Mandate:
    """What ``verdict`` mandates for ``qname``."""
    return _mandate(
        verdict.action,
        verdict.policy_id,
        verdict.answers,
        verdict.redirect,
        qname,
        verdict.policy.ede,
        verdict.ede_text,
    )


def mandate_of_rule(
    action: Action,
    policy: str,
    answers: Answers,
    redirect: Redirect | None,
    qname: str,
    ede: int,
    text: str,
) -> Mandate:
    return _mandate(action, policy, answers, redirect, qname, ede, text)


def _mandate(
    action: Action,
    policy: str,
    answers: Answers,
    redirect: Redirect | None,
    qname: str,
    ede: int,
    text: str,
) -> Mandate:
    if action is Action.REDIRECT and redirect is not None:
        ipv4 = [str(a) for a in redirect.ipv4]
        ipv6 = [str(a) for a in redirect.ipv6]
        for rtype, rdata in redirect.records:  # an RPZ zone's local data
            if rtype == wire.TYPE_A and len(rdata) == 4:
                ipv4.append(str(ipaddress.IPv4Address(rdata)))
            elif rtype == wire.TYPE_AAAA and len(rdata) == 16:
                ipv6.append(str(ipaddress.IPv6Address(rdata)))
        target = redirect.target()
        cname = ""
        if target.startswith(b"\x01*"):  # a per-query rewrite: the query name, then the target
            cname = qname + "." + wire.name_to_text(target[2:])
        elif target:
            cname = wire.name_to_text(target)
        return Mandate(action, policy, tuple(ipv4), tuple(ipv6), cname.lower(), ede, text)
    return Mandate(
        action,
        policy,
        tuple(str(a) for a in answers.ipv4),
        tuple(str(a) for a in answers.ipv6),
        "",
        ede,
        text,
    )


# --- what a check expects ------------------------------------------------------------------


class Expectation(Protocol):
    @property
    def kind(self) -> str: ...  # blocked | exempt | allowed | listed

    def expected(self, qtype: str, transport: str) -> str: ...
    def judge(self, qtype: str, transport: str, outcome: Outcome) -> Judgement: ...
    def tries(self, transport: str) -> int: ...


@dataclass(frozen=True)
class Blocked:
    mandate: Mandate
    kind: str = "blocked"

    def expected(self, qtype: str, transport: str) -> str:
        return self.mandate.describe(qtype, transport)

    def judge(self, qtype: str, transport: str, outcome: Outcome) -> Judgement:
        return self.mandate.judge(qtype, transport, outcome)

    def tries(self, transport: str) -> int:
        return 1 if self.mandate.action is Action.DROP or transport == "tcp" else 2


def _unblocked(signature: Signature, outcome: Outcome) -> Judgement:
    """A name that must not be blocked: no part of ``signature`` in the answer."""
    unanswered = _unanswered(outcome)
    if unanswered is not None:
        return unanswered
    answer = outcome.answer
    assert answer is not None
    found = signature.found(answer)
    if found is not None:
        return Judgement(VIOLATION, f"carries the block's signature: {found}")
    if answer.rcode != wire.NOERROR or not answer.records:
        return Judgement(
            OK,
            f"not blocked: {answer.rcode_name} with no sign of the block "
            "(as a name that does not exist upstream gets)",
        )
    return Judgement(OK, "not blocked: no sign of the block in the answer")


@dataclass(frozen=True)
class Exempt:
    """An exempted name: not the answer of the block it is exempted from."""

    mandate: Mandate
    extra: Signature = field(default_factory=Signature)  # the configured warning page
    kind: str = "exempt"

    def expected(self, qtype: str, transport: str) -> str:
        said = self.mandate.describe(qtype, transport)
        return f"not the block answer ({said}, marked by {self.signature.text()})"

    @property
    def signature(self) -> Signature:
        return self.mandate.signature | self.extra

    def judge(self, qtype: str, transport: str, outcome: Outcome) -> Judgement:
        if outcome.timeout and self.mandate.action is Action.DROP:
            return Judgement(ERROR, "could not check: no answer (dropped, or lost on the way)")
        return _unblocked(self.signature, outcome)

    def tries(self, transport: str) -> int:
        return 2 if transport == "udp" else 1


@dataclass(frozen=True)
class NotBlocked:
    """A name of an allowed list: no block signature at all."""

    signature: Signature
    kind: str = "allowed"

    def expected(self, qtype: str, transport: str) -> str:
        return f"not blocked (no {self.signature.text()})"

    def judge(self, qtype: str, transport: str, outcome: Outcome) -> Judgement:
        return _unblocked(self.signature, outcome)

    def tries(self, transport: str) -> int:
        return 2 if transport == "udp" else 1


EXPECT_KINDS = ("warning-page", "nxdomain", "nodata", "any-block")
_SAID = {"nxdomain": "NXDOMAIN", "nodata": "NODATA", "warning-page": "the expected warning page"}


@dataclass(frozen=True)
class Listed:
    """A name of a register audited as published: one of the answers the auditor expects.

    Several kinds are any one of them (a register enforced with a warning page for some
    names and NXDOMAIN for others). With ``any-block``, the warning page's addresses,
    when given, count as a block too: a resolver that serves the page without labelling
    it with an EDE (an RPZ resolver, say) cannot be told from one that resolved the name
    otherwise.
    """

    expect: tuple[str, ...] = ("any-block",)  # of EXPECT_KINDS
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    kind: str = "listed"

    @property
    def signature(self) -> Signature:
        return Signature(frozenset(self.ipv4 + self.ipv6), any_block_ede=True, sinks=True)

    def _addresses(self, qtype: str) -> tuple[str, ...]:
        return self.ipv4 if qtype == "A" else self.ipv6

    def _wanted(self, qtype: str) -> tuple[str, ...]:
        """The kinds of answer that will do for ``qtype``: a warning page with no address
        of that type is any block (an IPv4 page leaves AAAA to the resolver)."""
        found: list[str] = []
        for kind in self.expect:
            if kind == "warning-page" and not self._addresses(qtype):
                kind = "any-block"
            if kind not in found:
                found.append(kind)
        return ("any-block",) if "any-block" in found else tuple(found)

    def expected(self, qtype: str, transport: str) -> str:
        wanted = self._wanted(qtype)
        addresses = " ".join(sorted(self._addresses(qtype)))
        if wanted == ("any-block",):
            page = f", or the warning page {addresses}" if addresses else ""
            return f"a block (NXDOMAIN, NODATA, a sink address or a block EDE{page})"
        said = {
            "nxdomain": "NXDOMAIN",
            "nodata": "NODATA (NOERROR, no answer)",
            "warning-page": f"NOERROR {qtype} {addresses}",
        }
        return " or ".join(said[kind] for kind in wanted)

    def judge(self, qtype: str, transport: str, outcome: Outcome) -> Judgement:
        unanswered = _unanswered(outcome)
        if unanswered is not None:
            return unanswered
        answer = outcome.answer
        assert answer is not None
        wanted = self._wanted(qtype)
        if wanted == ("any-block",):
            return _any_block(answer, self.signature, TYPES[qtype])
        for kind in wanted:
            if self._meets(kind, qtype, answer):
                said = _SAID[kind] if kind == "warning-page" else f"{_SAID[kind]}, as expected"
                return Judgement(OK, said + _label(answer))
        return Judgement(VIOLATION, "not " + " or ".join(_SAID[kind] for kind in wanted))

    def _meets(self, kind: str, qtype: str, answer: Answer) -> bool:
        if kind == "nxdomain":
            return answer.rcode == wire.NXDOMAIN
        if answer.rcode != wire.NOERROR:
            return False
        if kind == "nodata":  # no record of the type, and no CNAME leading anywhere
            return not answer.has(TYPES[qtype]) and not answer.targets()
        return answer.addresses(TYPES[qtype]) == frozenset(self._addresses(qtype))

    def tries(self, transport: str) -> int:
        return 2 if transport == "udp" else 1


def _label(answer: Answer) -> str:
    found = answer.block_ede()
    return f", with {ede_text(*found)}" if found else ", no block EDE"


def _any_block(answer: Answer, signature: Signature, qtype: int) -> Judgement:
    found = signature.found(answer)
    if found is not None:
        if "EDE" in found:
            return Judgement(OK, "blocked: a block EDE")
        if found.startswith("the block's address"):
            return Judgement(OK, "blocked: the warning page" + _label(answer))
        return Judgement(OK, "blocked: a sink address")
    if answer.rcode == wire.NXDOMAIN:
        return Judgement(OK, "blocked: NXDOMAIN (no block EDE: a name that does not exist too)")
    if answer.rcode == wire.NOERROR and not answer.has(qtype) and not answer.targets():
        return Judgement(OK, "blocked: NODATA (no block EDE)")
    if answer.rcode == wire.NOERROR:
        return Judgement(VIOLATION, "resolved: not blocked")
    return Judgement(VIOLATION, f"{answer.rcode_name}: the server tried to resolve it")


def parse_expect(values: list[str]) -> Listed:
    """``--expect`` values, any one of which will do: ``warning-page=ADDR[,ADDR]``
    (repeatable), ``nxdomain``, ``nodata``, ``any-block`` (with a warning page given, its
    addresses count as a block)."""
    kinds: list[str] = []
    ipv4: list[str] = []
    ipv6: list[str] = []
    for value in values:
        name, _, rest = value.partition("=")
        if name not in EXPECT_KINDS:
            raise ValueError(
                f"--expect {value!r}: expected warning-page=ADDRESS, nxdomain, nodata or any-block"
            )
        if name not in kinds:
            kinds.append(name)
        if name != "warning-page":
            if rest:
                raise ValueError(f"--expect {name} takes no value")
            continue
        if not rest:
            raise ValueError("--expect warning-page needs an address: warning-page=192.0.2.80")
        for text in rest.split(","):
            try:
                address = ipaddress.ip_address(text.strip())
            except ValueError:
                raise ValueError(f"--expect warning-page: {text!r} is not an IP address") from None
            found = ipv4 if address.version == 4 else ipv6
            if str(address) not in found:
                found.append(str(address))
    return Listed(tuple(kinds) or ("any-block",), tuple(ipv4), tuple(ipv6))
