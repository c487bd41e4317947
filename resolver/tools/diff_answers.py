"""Answers a reload would change for names whose decision stays the same.

A name blocked by the same policy with the same action before and after a reload can
still be answered otherwise: a new warning page address, TTL, redirect target or
reference (the EDE text). The running server's answers are asked of it over DNS; the
new ones are rendered from the new build with the server's own Verdict.render; the
two are compared field by field.

Names that share a verdict share their answer, so one name is asked per verdict and
stands for all of that verdict's names, unless the verdict's policy file (or zone)
changed: then the entries of that file may each have changed on their own, and each
entry name is asked (at most PER_POLICY of them), the list names still counted
through one. Verdicts scoped to clients or dated, drop and tcp-only (no answer to
compare), and exemptions are not compared.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from operator import is_
from typing import Any

from resolver.core import wire
from resolver.core.endpoint import Endpoint
from resolver.core.errors import FormError
from resolver.core.matcher import CompiledPolicy
from resolver.core.verdict import Action, Verdict
from resolver.sources.snapshot import BuildResult
from resolver.tools.dnsanswer import (
    TYPES,
    Answer,
    answer_id,
    answers_question,
    build_query,
    ede_text,
    parse_answer,
    question,
)

PER_POLICY = 200
SHOWN = 50
SLICE = 4096  # names of the first layer looked at together
PROBE_LABEL = b"\x0adiff-probe"  # a name under an entry, for an entry for the names below
UNCOMPARED = (Action.ALLOW, Action.DROP, Action.TCP_ONLY)


class AnswerError(Exception):
    """The running server's answers could not be read over DNS."""


@dataclass
class Group:
    """Names decided by one verdict, with the name asked for them."""

    verdict: Verdict
    probe: bytes = b""  # wire name to ask
    count: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Cause:
    """One change of answer: what changed, from what to what, for how many names."""

    what: str
    before: str
    after: str
    names: int = 0
    policies: set[str] = field(default_factory=set)
    examples: list[str] = field(default_factory=list)

    def as_dict(self, limit: int | None) -> dict[str, Any]:
        return {
            "what": self.what,
            "before": self.before,
            "after": self.after,
            "names": self.names,
            "policies": sorted(self.policies),
            "examples": self.examples if limit is None else self.examples[:limit],
        }

    def text(self) -> str:
        return f"{self.what} {self.before} -> {self.after}"


@dataclass
class AnswerDiff:
    causes: list[Cause] = field(default_factory=list)
    names: int = 0  # names answered otherwise (each once, whatever the causes)
    changed: list[tuple[str, str, list[str]]] = field(default_factory=list)  # name, policy, causes
    not_compared: int = 0  # names of scoped or dated verdicts
    asked: int = 0  # queries sent to the server

    def as_dict(self, limit: int | None) -> dict[str, Any]:
        return {
            "count": self.names,
            "causes": [c.as_dict(limit) for c in self.causes],
            "not_compared": self.not_compared,
            "queries": self.asked,
        }


def _tables(policy: CompiledPolicy) -> list[CompiledPolicy]:
    layers = getattr(policy, "layers", None)
    if layers is None:
        return [policy]
    return [layer.qname for layer in layers]


def _sides(name: bytes, value: object) -> Iterator[tuple[bytes, Any]]:
    """(name to ask, verdict, or a choice among scoped or dated verdicts, or None) for the
    name itself and for the names below it."""
    if isinstance(value, Verdict):
        yield name, value
        return
    here, below = getattr(value, "here", None), getattr(value, "below", None)
    yield name, here
    if below is not here:
        yield PROBE_LABEL + name, below


def groups(
    result: BuildResult, changed_names: set[bytes], separate: set[bytes]
) -> tuple[list[Group], int]:
    """The names to compare, grouped by verdict; names in ``separate`` (entries of changed
    files) each get a group of their own. Also how many names are not compared."""
    policy = result.snapshot.policy
    tables = _tables(policy)
    found: dict[int, Group] = {}
    own: list[Group] = []
    per_policy: dict[str, int] = {}
    not_compared = 0
    for layer, table in enumerate(tables):
        for names, values in _slices(table.table, SLICE if not layer else 0):
            if _counted(found, per_policy, changed_names, separate, names, values):
                continue
            for name, value in zip(names, values, strict=True):
                if name in changed_names:
                    continue
                if not layer and isinstance(value, Verdict):
                    # The common case at once: one more name of a group already made.
                    group = found.get(id(value))
                    if group is not None and (
                        name not in separate or per_policy.get(value.policy_id, 0) >= PER_POLICY
                    ):
                        group.count += 1
                        if len(group.examples) < SHOWN:
                            group.examples.append(wire.name_to_text(name))
                        continue
                sides = ((name, value),) if isinstance(value, Verdict) else _sides(name, value)
                for asked, side in sides:
                    if not isinstance(side, Verdict):
                        if side is not None:
                            not_compared += 1  # scoped to clients or dated
                        continue
                    if side.action in UNCOMPARED:
                        continue
                    if layer and policy.locate(asked)[0] is not side:
                        continue  # an earlier layer decides
                    policy_id = side.policy_id
                    if name in separate and per_policy.get(policy_id, 0) < PER_POLICY:
                        per_policy[policy_id] = per_policy.get(policy_id, 0) + 1
                        own.append(Group(side, asked, 1, [_text(name, asked)]))
                        continue
                    group = found.get(id(side))
                    if group is None:
                        group = found[id(side)] = Group(side, asked)
                    group.count += 1
                    if len(group.examples) < SHOWN:
                        group.examples.append(_text(name, asked))
    return [*found.values(), *own], not_compared


def _slices(table: dict[bytes, Any], size: int) -> Iterator[tuple[list[bytes], list[Any]]]:
    """The names of a table and their values, ``size`` at a time (all at once for 0)."""
    names, values = list(table), list(table.values())
    if not size:
        yield names, values
        return
    for start in range(0, len(names), size):
        yield names[start : start + size], values[start : start + size]


def _counted(
    found: dict[int, Group],
    per_policy: dict[str, int],
    changed_names: set[bytes],
    separate: set[bytes],
    names: list[bytes],
    values: list[Any],
) -> bool:
    """Whether ``names`` (of the first layer) were counted at once: all of one verdict whose
    group is made, none of them changed, none to be asked on its own. Only the examples
    the group still lacks are written as text."""
    first = values[0] if values else None
    group = found.get(id(first))
    if (
        group is None
        or not all(map(is_, values, repeat(first)))
        or not changed_names.isdisjoint(names)
        or (
            per_policy.get(group.verdict.policy_id, 0) < PER_POLICY
            and not separate.isdisjoint(names)
        )
    ):
        return False
    group.count += len(names)
    room = SHOWN - len(group.examples)
    if room > 0:
        group.examples.extend(map(wire.name_to_text, names[:room]))
    return True


def _text(name: bytes, asked: bytes) -> str:
    """How a name of a group is shown: ``*.name`` for the names below ``name``."""
    text = wire.name_to_text(name)
    return text if asked is name else "*." + text


def fields(answer: Answer, qtype: int) -> dict[str, str]:
    """What is compared, as text."""
    name = "A" if qtype == wire.TYPE_A else "AAAA"
    addresses = sorted(r.data for r in answer.records if r.rtype == qtype)
    others = sorted(str(r) for r in answer.records if r.rtype not in (qtype, wire.TYPE_CNAME))
    return {
        "rcode": answer.rcode_name,
        f"{name} address": " ".join(addresses) or "none",
        "CNAME target": " ".join(r.data for r in answer.records if r.rtype == wire.TYPE_CNAME)
        or "none",
        "records": "; ".join(others) or "none",
        "TTL": str(answer.ttl) if answer.ttl is not None else "none",
        "EDE": "; ".join(ede_text(code, text)[4:] for code, text in answer.ede) or "none",
    }


def rendered(verdict: Verdict, qname: bytes, qtype: int) -> Answer:
    """The answer ``verdict`` gives (what the new build would send)."""
    query = wire.parse_query(build_query(question(wire.name_to_text(qname), qtype), 0))
    return parse_answer(verdict.render(query))


def ask(server: Endpoint, qname: bytes, qtype: int, timeout: float = 2.0) -> Answer:
    """One query over UDP (twice at most), then over TCP when the answer is truncated."""
    asked = question(wire.name_to_text(qname), qtype)
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    error = "no answer"
    for _ in range(2):
        qid = random.randrange(65536)
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.connect((server.host, server.port))
                sock.send(build_query(asked, qid))
                while True:
                    data = sock.recv(65535)
                    if answer_id(data) == qid and answers_question(data, asked):
                        break
            answer = parse_answer(data)
            if not answer.truncated:
                return answer
            return _ask_tcp(server, family, asked, qid, timeout)
        except TimeoutError:
            error = f"no answer within {timeout:g} s"
        except (OSError, FormError) as exc:
            error = getattr(exc, "strerror", None) or str(exc)
            break
    raise AnswerError(f"cannot ask {server} over DNS for its answers: {error}")


def _ask_tcp(server: Endpoint, family: int, asked: bytes, qid: int, timeout: float) -> Answer:
    with socket.create_connection((server.host, server.port), timeout) as sock:
        query = build_query(asked, qid)
        sock.sendall(len(query).to_bytes(2, "big") + query)
        data = b""
        while len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big"):
            chunk = sock.recv(65535)
            if not chunk:
                raise OSError("the server closed the connection")
            data += chunk
    return parse_answer(data[2 : 2 + int.from_bytes(data[:2], "big")])


def compare(
    result: BuildResult,
    server: Endpoint,
    changed_names: Iterable[str],
    changed_policies: Iterable[str],
    timeout: float = 2.0,
) -> AnswerDiff:
    """Every change of answer for names whose decision a reload keeps."""
    changed = {wire.text_to_name(n.removeprefix("=").removeprefix("*.")) for n in changed_names}
    ids = set(changed_policies)
    # The wire names of the changed policies' entries (as their build named them).
    separate: set[bytes] = set()
    for report in result.reports:
        if report.id in ids:
            separate.update(report.named)
    for zone in getattr(result, "zones", ()):
        if zone.name.rstrip(".") in ids:
            separate.update(
                name
                for layer in getattr(result.snapshot.policy, "layers", ())
                if layer.name == zone.name
                for name in layer.qname.table
            )
    found, not_compared = groups(result, changed, separate)
    out = AnswerDiff(not_compared=not_compared)
    causes: dict[tuple[str, str, str], Cause] = {}
    for group in found:
        differences: list[tuple[str, str, str]] = []
        for qtype in TYPES.values():
            out.asked += 1
            before = fields(ask(server, group.probe, qtype, timeout), qtype)
            after = fields(rendered(group.verdict, group.probe, qtype), qtype)
            differences.extend(
                (what, before[what], after[what])
                for what in after
                if before[what] != after[what]
                and (what, before[what], after[what]) not in differences
            )
        if not differences:
            continue
        out.names += group.count
        policy_id = group.verdict.policy_id
        for key in differences:
            cause = causes.get(key)
            if cause is None:
                cause = causes[key] = Cause(*key)
            cause.names += group.count
            cause.policies.add(policy_id)
            room = SHOWN - len(cause.examples)
            cause.examples.extend(group.examples[: max(room, 0)])
        texts = [f"{w} {b} -> {a}" for w, b, a in differences]
        for example in group.examples:
            if len(out.changed) < 10 * SHOWN:
                out.changed.append((example, policy_id, texts))
    out.causes = sorted(causes.values(), key=lambda c: (-c.names, c.what, c.before))
    return out
