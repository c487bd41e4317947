"""`sinkhole explain NAME`: which entry decides a query, which others matched and lost, and
the exact answer the server would send.

The entries that match are found by a plain scan over every parsed entry and list
name (not the compiled table), ordered by the precedence rule written out as a
sort key; the compiled table is then asked too, and any disagreement is reported.
The answer is built with the server's own Verdict.render and decoded with dnslib.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dnslib import DNSRecord

from resolver.core import wire
from resolver.core.cache import Cache, CacheSettings
from resolver.core.chain import Chase
from resolver.core.clients import ClientAcl, client_address
from resolver.core.codes import rcode_name, type_name
from resolver.core.engine import Engine
from resolver.core.flight import Waiter
from resolver.core.layers import mapped
from resolver.core.snapshot import Snapshot
from resolver.core.verdict import Action, ClientScope, Verdict
from resolver.sources.config import Config
from resolver.sources.names import normalise
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import Rule, all_rules, list_lines, zone_rules

EDE_PURPOSES = {15: "Blocked", 16: "Censored", 17: "Filtered", 18: "Prohibited"}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Match:
    """An entry that covers the query name, and what became of it."""

    rule: Rule
    decides: bool
    reason: str  # why it lost ("" for the entry that decides)

    def as_dict(self) -> dict[str, Any]:
        return {**rule_dict(self.rule), "decides": self.decides, "reason": self.reason}


def rule_dict(rule: Rule) -> dict[str, Any]:
    return {
        "entry": rule.pattern,
        "name": rule.name,
        "form": rule.form,
        "action": rule.action.label,
        "policy": rule.policy_id,
        "file": rule.file,
        "line": rule.line,
        "column": rule.column,
        "from_list": rule.listed,
        "reference": rule.reference or rule.policy.info.reference or rule.policy_id,
    }


def specificity(rule: Rule) -> int:
    """How many labels the entry's name has: more labels, more specific."""
    return rule.name.count(".") + 1


def precedence(rule: Rule) -> tuple[int, ...]:
    """The sort key of the precedence rule (higher first).

    Layers first: the policy files, then each RPZ zone in configuration order; the first
    layer with a rule that applies decides. Within a zone its client-IP triggers come
    before its name triggers (the longest prefix, then the lowest address). Among name
    rules: the most specific name, then (at the same name) an exemption before a block,
    then the policy listed first, then the entry read first.
    """
    if rule.network is not None:
        address, length = mapped(rule.network)
        return (-rule.layer, 1, length, -address, 0, 0, 0)
    return (-rule.layer, 0, specificity(rule), *rule.rank, 0)


def ranked(rules: Iterable[Rule]) -> list[Rule]:
    """The matching rules in precedence order, best first."""
    return sorted(rules, key=precedence, reverse=True)


def scope_text(scope: ClientScope) -> str:
    parts = []
    if scope.include:
        parts.append("only " + ", ".join(str(n) for n in scope.include))
    if scope.exclude:
        parts.append("not " + ", ".join(str(n) for n in scope.exclude))
    return "; ".join(parts) or "every client"


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def decide(
    matching: Iterable[Rule], client: Address | None, now: datetime
) -> tuple[Rule | None, list[Match]]:
    """The rule that decides among those covering the query name, and why each other lost.

    ``client`` None: a client in none of the networks the rules name.
    """
    order = ranked(matching)

    def unfit(rule: Rule) -> str:
        info = rule.policy.info
        if not info.active(now):
            if info.effective_from is not None and now < info.effective_from:
                return f"policy not in force: it comes into force on {when(info.effective_from)}"
            if info.expires is not None:
                return f"policy not in force: it expired on {when(info.expires)}"
            return "policy not in force"
        if not rule.applies(client):
            if rule.network is not None:
                return "not applicable to this client (not in the trigger's network)"
            return f"not applicable to this client (applies to {scope_text(rule.clients)})"
        return ""

    winner = next((r for r in order if not unfit(r)), None)
    out = []
    for rule in order:
        if rule is winner:
            out.append(Match(rule, True, ""))
            continue
        reason = unfit(rule)
        if not reason and winner is not None:
            if rule.layer > winner.layer:
                reason = f"{layer_name(rule)} comes after {layer_name(winner)}, which decides first"
            elif winner.network is not None:
                reason = (
                    f"the zone's client-IP trigger {winner.network} comes first"
                    if rule.network is None
                    else f"the client-IP trigger {winner.network} is more specific"
                )
            elif specificity(rule) < specificity(winner):
                reason = f"less specific than {winner.pattern}"
            elif winner.allow and not rule.allow:
                reason = "same name, but the exemption wins"
            elif rule.order > winner.order:
                reason = (
                    f"same name, but policy {winner.policy_id!r} is listed before "
                    f"{rule.policy_id!r} in the configuration"
                )
            else:
                reason = f"same name, but the entry at {winner.where()} is read first"
        out.append(Match(rule, False, reason))
    return winner, out


def scope_test(client: Address | None) -> Callable[[ClientScope], bool]:
    """Whether a client scope includes ``client``; None stands for a client in none of the
    networks the scopes name."""
    if client is None:
        return lambda scope: not scope.include
    return lambda scope: scope.applies(client)


def layer_name(rule: Rule) -> str:
    return f"zone {rule.policy_id}" if rule.zone else "the policy files"


def matching_rules(
    policies: Iterable[PolicyFile], qname: str, compiled: Any = None
) -> Iterator[Rule]:
    """Every entry and list name of every policy, and every trigger of the RPZ zones of
    ``compiled``, that covers ``qname``: a plain scan."""
    for rule in all_rules(policies):
        if rule.covers(qname):
            yield rule
    for rule in zone_rules(compiled):
        if rule.covers(qname):
            yield rule


@dataclass
class Explanation:
    qname: str
    qtype: int
    client: Address | None
    now: datetime
    winner: Rule | None = None
    matches: list[Match] = field(default_factory=list)
    client_allowed: bool = True
    compiled: Verdict | None = None
    compiled_name: str = ""
    consistent: bool = True
    answer: dict[str, Any] | None = None  # the decoded answer(s), by transport
    forwarded: list[str] | None = None  # upstreams, when the query is forwarded
    zones: bool = False  # RPZ zones are configured: upstream answers are screened too

    @property
    def outcome(self) -> str:
        if not self.client_allowed:
            return "refused"
        if self.qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
            return "refused"
        if self.winner is None:
            return "forwarded"
        if self.winner.allow:
            return "exempted"
        return "blocked"

    def as_dict(self) -> dict[str, Any]:
        winner = self.winner
        return {
            "query": {
                "name": self.qname,
                "type": type_name(self.qtype),
                "client": str(self.client) if self.client is not None else None,
                "at": self.now.isoformat(),
            },
            "outcome": self.outcome,
            "client_allowed": self.client_allowed,
            "action": winner.action.label if winner else None,
            "policy": policy_dict(winner.policy) if winner else None,
            "decided_by": rule_dict(winner) if winner else None,
            "matched": [m.as_dict() for m in self.matches],
            "answer": self.answer,
            "forwarded_to": self.forwarded,
            "compiled": {
                "policy": self.compiled.policy_id if self.compiled else None,
                "action": self.compiled.action.label if self.compiled else None,
                "name": self.compiled_name,
            },
            "consistent": self.consistent,
        }


def policy_dict(policy: PolicyFile) -> dict[str, Any]:
    info = policy.info
    return {
        "id": info.id,
        "file": info.source,
        "title": info.title,
        "authority": info.authority,
        "legal_basis": info.legal_basis,
        "reference": info.reference,
        "effective_from": info.effective_from.isoformat() if info.effective_from else None,
        "expires": info.expires.isoformat() if info.expires else None,
    }


def explain(
    config: Config,
    policies: list[PolicyFile],
    compiled: Any,
    name: str,
    qtype: int,
    client: Address | None,
    now: datetime,
) -> Explanation:
    """Explain the query ``name``/``qtype`` from ``client`` at ``now``.

    ``compiled`` is the snapshot's policy (anything with ``match_client``), built from
    the same files and set to the same clock.
    """
    qname = normalise(name)
    result = Explanation(qname, qtype, client, now)
    if client is not None:
        result.client_allowed = any(
            client in net for net in config.allow_clients if net.version == client.version
        )
    result.winner, result.matches = decide(
        with_list_lines(list(matching_rules(policies, qname, compiled))), client, now
    )
    result.zones = bool(getattr(compiled, "layers", ()))

    qwire = wire.text_to_name(qname)

    applies = scope_test(client)
    verdict, deciding, _ = compiled.match_client(qwire, applies)
    result.compiled = verdict
    result.compiled_name = wire.name_to_text(deciding) if deciding else ""
    result.consistent = agrees(result.winner, verdict, result.compiled_name)

    if not result.client_allowed or qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
        result.answer = {"udp": render(qname, qtype, None, refused=True)}
        result.answer["tcp"] = result.answer["udp"]
        return result
    if verdict is None or verdict.action is Action.ALLOW:
        result.forwarded = [str(e) for e in config.upstreams]
        return result
    udp = render(qname, qtype, verdict, compiled=compiled, client=client)
    tcp: dict[str, Any] | None = udp
    if verdict.action is Action.TCP_ONLY:
        tcp = None
        result.forwarded = [str(e) for e in config.upstreams]
    result.answer = {"udp": udp, "tcp": tcp}
    return result


def with_list_lines(rules: list[Rule]) -> list[Rule]:
    """The rules, list names given the line they are on (the n-th time for a repeated name)."""
    seen: dict[tuple[str, str], int] = {}
    for rule in rules:
        if rule.listed:
            key = (rule.file, rule.name)
            seen[key] = seen.get(key, 0) + 1
    lines = {key: list_lines(Path(key[0]), key[1], count) for key, count in seen.items()}
    out = []
    for rule in rules:
        if rule.listed:
            found = lines[(rule.file, rule.name)]
            rule = replace(rule, line=found.pop(0) if found else 0)
        out.append(rule)
    return out


def agrees(winner: Rule | None, verdict: Verdict | None, name: str) -> bool:
    """Whether the scan's winner is the compiled table's verdict, found at ``name``."""
    if winner is None or verdict is None:
        return winner is None and verdict is None
    if winner.verdict is not None:  # a zone's trigger: the very verdict, at the very name
        return winner.verdict is verdict and (winner.network is not None or winner.name == name)
    return (
        winner.policy_id == verdict.policy_id
        and winner.action is verdict.action
        and winner.name == name
        and (winner.reference or winner.policy.info.reference or winner.policy_id)
        == verdict.ede_text
    )


def synthetic_bytes(qname: str, qtype: int) -> bytes:
    """A query as a stub resolver sends it: RD set, EDNS with a 1232-octet payload."""
    question = wire.text_to_name(qname) + wire.U16.pack(qtype) + wire.U16.pack(wire.CLASS_IN)
    header = wire.HEADER.pack(0x5348, wire.RD, 1, 0, 0, 1)
    return header + question + wire.build_opt(False)


def synthetic_query(qname: str, qtype: int) -> wire.Query:
    return wire.parse_query(synthetic_bytes(qname, qtype))


def render(
    qname: str,
    qtype: int,
    verdict: Verdict | None,
    refused: bool = False,
    compiled: Any = None,
    client: Address | None = None,
) -> dict[str, Any]:
    """The answer the server sends (decoded): the verdict's own bytes, or REFUSED. A policy
    CNAME is followed as the server follows it (with ``compiled``): through further policy
    CNAMEs to the target's own policy answer, or up to the name the upstreams resolve."""
    query = synthetic_query(qname, qtype)
    if refused:
        data = wire.build_reply(query, wire.REFUSED)
    else:
        assert verdict is not None
        if verdict.action is Action.DROP:
            return {"sent": False, "text": "no answer is sent (the query is dropped)"}
        data = verdict.render(query)
        if compiled is not None and verdict.action is Action.REDIRECT:
            followed = follow(synthetic_bytes(qname, qtype), compiled, client)
            if followed is not None:
                data, then = followed
                decoded = decode(data)
                if then:
                    decoded["then"] = then
                return decoded
    return decode(data)


def follow(data: bytes, compiled: Any, client: Address | None) -> tuple[bytes, str] | None:
    """The answer to ``query`` when its policy answer is a CNAME the server follows, with
    what happens next when the target is resolved upstream ("" when nothing does); None
    when the answer is not followed (addresses, or the CNAME type asked)."""
    engine = Engine(Snapshot(compiled), Cache(CacheSettings(max_entries=0)), ClientAcl(EVERY))
    who = str(client) if client is not None else NO_CLIENT
    pending = engine.handle(data, who, 0, False)
    if not isinstance(pending, Chase):
        return None
    waiter = Waiter(pending.query, _Nowhere(), None, who, False, 0.0)
    work = engine.follow(pending, waiter, 0.0)
    if work.sends:
        return work.sends[0][1], ""
    step = work.asks[0].query
    target = wire.name_to_text(step.qname)
    then = (
        f"then {target} {type_name(step.qtype)} is resolved through the cache and the "
        "upstreams: its records follow the chain, and its status is the answer's"
    )
    return pending.answer(wire.build_reply(step, wire.NOERROR)), then


EVERY = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
NO_CLIENT = "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe"  # for "any client": in no network named


class _Nowhere:
    def send(self, waiter: Waiter, reply: bytes) -> None:  # never called: follow returns
        raise AssertionError("follow sends nothing itself")


def decode(data: bytes) -> dict[str, Any]:
    record = DNSRecord.parse(data)
    header = record.header
    flags = [
        flag
        for flag, on in (
            ("qr", header.qr),
            ("aa", header.aa),
            ("tc", header.tc),
            ("rd", header.rd),
            ("ra", header.ra),
            ("ad", header.ad),
            ("cd", header.cd),
        )
        if on
    ]
    ede = []
    for rr in record.ar:
        if rr.rtype == wire.TYPE_OPT:
            for option in rr.rdata:
                if option.code == wire.EDE_OPTION and len(option.data) >= 2:
                    code = int.from_bytes(option.data[:2], "big")
                    ede.append(
                        {
                            "code": code,
                            "purpose": EDE_PURPOSES.get(code, ""),
                            "text": option.data[2:].decode("utf-8", "replace"),
                        }
                    )
    return {
        "sent": True,
        "rcode": rcode_name(header.rcode),
        "flags": flags,
        "answer": [_rr_text(rr) for rr in record.rr],
        "authority": [_rr_text(rr) for rr in record.auth],
        "ede": ede,
        "size": len(data),
    }


def _rr_text(rr: Any) -> str:
    return " ".join(str(rr).split())


def build(config: Config, now: datetime) -> tuple[list[PolicyFile], Any]:
    """The parsed policies and the compiled table, as the server builds them, at ``now``."""
    from resolver.sources.snapshot import build_snapshot

    result = build_snapshot(config)
    compiled = result.snapshot.policy
    compiled.set_clock(now)
    return list(result.policies), compiled


def parse_client(text: str | None) -> Address | None:
    if text is None:
        return None
    address = client_address(text)
    if address is None:
        raise ValueError(f"{text!r} is not an IP address")
    return address


# --- text output ---------------------------------------------------------------------------


def render_text(result: Explanation) -> Iterator[str]:
    who = f"from {result.client}" if result.client is not None else "from any client"
    yield f"{result.qname} {type_name(result.qtype)} {who} at {when(result.now)}"
    winner = result.winner
    if not result.client_allowed:
        yield "refused: the client is not in allow_clients"
    elif result.qtype in (wire.TYPE_AXFR, wire.TYPE_IXFR):
        yield "refused: zone transfers are not served"
    elif winner is None:
        yield "not blocked: no entry decides this name"
    elif winner.allow:
        yield f"exempted by policy {winner.policy_id!r}: forwarded as usual"
    else:
        info = winner.policy.info
        about = "; ".join(x for x in (info.title, info.authority, info.legal_basis) if x)
        yield f"blocked: {winner.action.label} by policy {winner.policy_id!r}" + (
            f" ({about})" if about else ""
        )
    if winner is not None:
        yield f"  decided by {_entry(winner)}"
    losers = [m for m in result.matches if not m.decides]
    if losers:
        yield "  matched but lost:"
        for match in losers:
            yield f"    {_entry(match.rule)}: {match.reason}"
    if result.client is None and any(
        m.rule.network is not None or m.rule.clients.include for m in result.matches
    ):
        yield (
            "  (no --client given: for a client in none of the networks the entries name; "
            "--client IP shows another)"
        )
    if result.answer is not None:
        udp, tcp = result.answer.get("udp"), result.answer.get("tcp")
        if udp == tcp:
            yield "answer over UDP and TCP (query with EDNS):"
            yield from _answer_lines(udp)
        else:
            yield "answer over UDP (query with EDNS):"
            yield from _answer_lines(udp)
            if tcp is None:
                yield "over TCP: forwarded to upstreams " + ", ".join(result.forwarded or [])
            else:
                yield "answer over TCP:"
                yield from _answer_lines(tcp)
    elif result.forwarded is not None:
        upstreams = ", ".join(result.forwarded) or "(none configured: SERVFAIL)"
        yield f"answer: forwarded to upstreams {upstreams}"
        if result.zones:
            yield (
                "  (with RPZ zones, the upstream's answer is checked too: the names of its "
                "CNAME chain and its addresses)"
            )
    if not result.consistent:
        compiled = result.compiled
        got = (
            f"{compiled.action.label} by policy {compiled.policy_id!r} at {result.compiled_name}"
            if compiled
            else "no entry"
        )
        yield f"error: the server's compiled table decides otherwise ({got}); please report this"


def _entry(rule: Rule) -> str:
    where = rule.where() + (f":{rule.column}" if rule.line and rule.column else "")
    if rule.zone:
        return f"trigger {rule.pattern} ({_action(rule)}, zone {rule.policy_id!r}) at {where}"
    kind = "list name" if rule.listed else "entry"
    return f"{kind} {rule.pattern} ({_action(rule)}, policy {rule.policy_id!r}) at {where}"


def _action(rule: Rule) -> str:
    return "exemption" if rule.allow else rule.action.label


def _answer_lines(answer: dict[str, Any] | None) -> Iterator[str]:
    if answer is None:
        return
    if not answer.get("sent"):
        yield "  " + answer["text"]
        return
    yield f"  status {answer['rcode']}, flags {' '.join(answer['flags'])}"
    for rr in answer["answer"]:
        yield f"  answer     {rr}"
    if answer.get("then"):
        yield f"  ...        {answer['then']}"
    for rr in answer["authority"]:
        yield f"  authority  {rr}"
    for ede in answer["ede"]:
        purpose = f" ({ede['purpose']})" if ede["purpose"] else ""
        yield f"  EDE {ede['code']}{purpose}: {ede['text']}"
