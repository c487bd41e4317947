"""Policy on upstream answers: what an answer holds that a policy can judge (sans I/O).

RPZ's CNAME-chain and response-IP triggers judge an upstream answer by its content:
the names of its CNAME chain and its A and AAAA addresses. Reading them costs a
parse, so they are kept per cache key (``AnswerFacts``) for every answer with a
CNAME, and for every answer once a policy has response-IP triggers, and judged again
each time the answer is served: a reload applies to cached answers at once.
"""

from __future__ import annotations

from collections.abc import Callable

from resolver.core import cache as answers
from resolver.core import wire
from resolver.core.cache import Answer, Cache
from resolver.core.errors import FormError
from resolver.core.matcher import CompiledPolicy
from resolver.core.verdict import ClientScope, Verdict

Facts = tuple[Answer, tuple[bytes, ...], tuple[bytes, ...]]  # answer, CNAME targets, addresses
Applies = Callable[[ClientScope], bool]  # whether a client scope includes the client asking


def everyone(scope: ClientScope) -> bool:
    """The scopes that apply when the client does not matter: those of every client."""
    return scope.everyone


class AnswerFacts:
    """The facts of the answers the cache holds, by cache key."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        # Read directly on the hot path (empty: nothing to judge); pruned in place.
        self.kept: dict[bytes, Facts] = {}

    def keep(self, facts: Facts, now: int) -> Facts:
        """Keep what the policy checks in an answer (its CNAME targets and addresses)."""
        kept = self.kept
        if len(kept) >= 2 * self.cache.settings.max_entries + 1024:
            # Keep every answer still served; answers past their TTL or evicted go.
            live = self.cache.live
            for key in [k for k, f in kept.items() if not live(f[0], now)]:
                del kept[key]
        kept[facts[0][answers.KEY]] = facts
        return facts

    def of(self, answer: Answer) -> Facts | None:
        """The facts kept for this very answer (not an older one under its key)."""
        facts = self.kept.get(answer[answers.KEY])
        return facts if facts is not None and facts[0] is answer else None

    def screen(
        self, answer: Answer, policy: CompiledPolicy, applies: Applies, qname: bytes = b""
    ) -> tuple[Verdict | None, bool]:
        """The verdict on an answer's content (for a query name no entry covered before the
        answer), and whether it depended on the client or the clock. With layers that wait
        for the answer (``policy.deferred``), ``qname`` is checked against them too."""
        facts = self.of(answer)
        if facts is None:
            if not policy.has_response_ip:
                return None, False  # no CNAME in it (answers with one are always read)
            targets, found = answer_facts(answer)
            if targets or found:
                facts = self.keep((answer, targets, found), answer[answers.STORED])
            elif not policy.deferred:
                return None, False
            else:
                facts = (answer, (), ())
        addresses = facts[2] if policy.has_response_ip else ()
        if policy.deferred:
            return policy.screen(facts[1], addresses, applies, qname)
        return policy.screen(facts[1], addresses, applies)

    def chain_name(
        self, answer: Answer, verdict: Verdict, policy: CompiledPolicy, applies: Applies
    ) -> bytes:
        """The name in the answer's CNAME chain that ``verdict`` was given for; b"" when
        it came from another trigger (an address, or the query name)."""
        facts = self.of(answer)
        if facts is None:
            return b""
        for target in facts[1]:
            found, _, _ = policy.match_client(target, applies)
            if found is verdict:
                return target
        return b""


def stale_verdict(
    facts: AnswerFacts, answer: Answer, policy: CompiledPolicy, applies: Applies, qname: bytes
) -> Verdict | None:
    """The policy's verdict, as it is now, on an expired answer to ``qname``: its query
    name, CNAME chain and addresses, checked afresh."""
    if policy.dynamic:
        verdict, _, _ = policy.match_client(qname, applies)
    else:
        verdict = policy.match(qname)
    if verdict is None:
        targets, found = answer_facts(answer)
        if targets or (found and policy.has_response_ip):
            found = found if policy.has_response_ip else ()
            verdict, _ = policy.screen(targets, found, applies)
    if verdict is None and policy.deferred:
        verdict, _ = facts.screen(answer, policy, applies, qname)
    return verdict


def answer_facts(answer: Answer) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """The CNAME targets (wire form, lower case, in order) and the A and AAAA data of an
    answer's answer section."""
    counts = answer[answers.COUNTS_PLAIN]
    ancount = counts[2] << 8 | counts[3]
    if not ancount:
        return (), ()
    message = bytes(12) + answer[answers.BODY]  # offsets as in the upstream's message
    targets: list[bytes] = []
    addresses: list[bytes] = []
    try:
        pos = wire.skip_name(message, 12) + 4
        for _ in range(ancount):
            rtype, fixed, end = wire.skip_rr(message, pos)
            if rtype == wire.TYPE_CNAME:
                targets.append(wire.read_name(message, fixed + 10)[0].lower())
            elif (rtype == wire.TYPE_A and end - fixed == 14) or (
                rtype == wire.TYPE_AAAA and end - fixed == 26
            ):
                addresses.append(message[fixed + 10 : end])
            pos = end
    except FormError:
        pass  # parse_reply checked it; nothing more to read
    return tuple(targets), tuple(addresses)
