"""The per-query decision, bytes in and bytes out (sans I/O).

The fast path is one flat function, ``handle``: client check, parse, policy, cache.
A query it cannot answer at once leaves it as a Query (a cache miss) or a Chase (a
policy CNAME to follow); the network edge makes it a Waiter and hands it back to
``ask`` or ``follow``. When an upstream question is answered or given up,
``complete`` decides every waiter's reply, counts and logs it, and says what to send
and what to ask next. Policy runs before the cache, so the cache only ever holds
upstream answers and a reload needs no flush.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from resolver.core import cache as answers
from resolver.core import outbound, wire
from resolver.core.cache import Answer, Cache
from resolver.core.chain import NOT_FOLLOWED, Chase, cname_chain, cname_target
from resolver.core.clients import ClientAcl, client_address
from resolver.core.ddr import RESOLVER_ARPA, Designated, under_resolver_arpa
from resolver.core.errors import FormError, NotImplementedQuery
from resolver.core.flight import Question, Waiter, Work
from resolver.core.matcher import CompiledPolicy
from resolver.core.outcome import Counters, Outcome, QueryLog
from resolver.core.replay import RELEASE_SLICE, Replay, Replays, udp_limit
from resolver.core.screening import AnswerFacts, everyone, stale_verdict
from resolver.core.snapshot import Snapshot
from resolver.core.tally import NO_ANSWER, Latency, Tallies
from resolver.core.verdict import Action, ClientScope, PolicyInfo, Verdict

MAX_TCP = 65535


class Engine:
    """Decides every query. Assigning ``snapshot`` (a reload) replaces the policy at once."""

    def __init__(
        self,
        snapshot: Snapshot,
        cache: Cache,
        acl: ClientAcl,
        counters: Counters | None = None,
        query_log: QueryLog | None = None,
        log_all: bool = False,
    ) -> None:
        self._snapshot = snapshot
        # Counts policy changes (reloads, dated policies switched): a question asked in
        # the current generation needs no second look at its name when answered.
        self._generation = 0
        self.replays = Replays()
        self._scope_memo: dict[tuple[str, int], bool] = {}
        self.cache = cache
        self._acl = acl
        self._acl_seen = acl.seen
        self.counters = counters or Counters()
        # Answers by query type, rcode, policy and action (read by /metrics), and the
        # answer times of the queries that waited for an upstream, by outcome.
        self.tallies = Tallies()
        self.latency = {Outcome.FORWARDED: Latency(), Outcome.SERVFAIL: Latency()}
        self._time_forwarded = self.latency[Outcome.FORWARDED].add
        self._time_servfail = self.latency[Outcome.SERVFAIL].add
        self.query_log = query_log
        self.log_all = log_all
        # NOTIFY requests (opcode 4) go here instead of being answered NOTIMP: (data, client)
        # -> the answer. Set by the composition root for the zones followed by transfer.
        self.on_notify: Callable[[bytes, str], bytes | None] | None = None
        # resolver.arpa and below: the encrypted endpoints to designate (RFC 9462).
        self.designated = Designated()
        # What the policy checks in upstream answers (CNAME chains, addresses); the dict
        # itself is read on the hot path: empty, there is nothing to judge.
        self.facts = AnswerFacts(cache)
        self._kept_facts = self.facts.kept
        # Questions asked upstream and not answered yet, by cache key: an identical
        # question joins the one in flight instead of being asked again.
        self.inflight: dict[bytes, Question] = {}

    @property
    def acl(self) -> ClientAcl:
        return self._acl

    @acl.setter
    def acl(self, acl: ClientAcl) -> None:
        self._acl = acl
        self._acl_seen = acl.seen

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @snapshot.setter
    def snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._generation += 1
        self.replays.retire()  # replies built under the old policy must not be replayed
        self.tallies.settle()  # and their tallies, which hold its verdicts, are totalled
        self._scope_memo = {}  # keyed by id() of the old snapshot's scopes

    def handle(
        self, data: bytes, client: str, now: int, tcp: bool
    ) -> bytes | wire.Query | Chase | None:
        """Answer ``data`` from ``client``: reply bytes; a Query to ask upstream or a Chase
        (a policy CNAME to follow), both handed to the network edge to wait on; or None
        to drop."""
        replay = self.replays.table.get(data[2:])
        if replay is not None and (self._acl_seen.get(client) or self.acl.allows(client)):
            answer = replay.answer
            if answer is None:
                # Counted in the entry's tally alone (one increment: see ``outcomes``).
                if tcp:
                    replay.tally.tcp += 1
                else:
                    replay.tally.udp += 1
                if self.query_log is not None:
                    rcode = replay.body[1] & 0xF
                    self.query_log.record(
                        client, replay.query, Outcome.BLOCKED, replay.verdict, rcode
                    )
                return data[:2] + replay.body
            # Rendered in this second: not expired (expiry is counted in whole seconds),
            # so a hit only needs the cache to hold this very answer still (not replaced
            # or evicted), and marks it recently used. At the next second the TTLs are
            # counted down and the answer rendered again.
            if replay.second == now:
                cache = self.cache
                key = answer[answers.KEY]
                live = cache.entry(key) is answer  # not replaced or evicted
                if live:
                    cache.touch(key)
            else:
                live = replay.refresh(self.cache, now)
            if live:
                if tcp:
                    replay.tally.tcp += 1
                else:
                    replay.tally.udp += 1
                if self.log_all and self.query_log is not None:
                    rcode = answer[answers.RCODE]
                    self.query_log.record(client, replay.query, Outcome.CACHED, None, rcode)
                return data[:2] + replay.body
            del self.replays.table[data[2:]]
        return self._decide(data, client, now, tcp)

    def outcomes(self) -> dict[Outcome, int]:
        """Queries answered, by outcome: the counters and the replays in their tallies."""
        counts = self.counters.by_outcome()
        blocked, cached = self.tallies.replays()
        counts[Outcome.BLOCKED] += blocked
        counts[Outcome.CACHED] += cached
        return counts

    def policy_clock(self, now: datetime) -> list[tuple[PolicyInfo, bool]]:
        """Switch dated policies on or off at ``now``; the policies that changed."""
        changed = self._snapshot.policy.set_clock(now)
        if changed:
            self._generation += 1
            self.replays.retire()
        return changed

    @property
    def retired(self) -> list[dict[bytes, Replay]]:
        """Replay tables of earlier policies, still to be freed (``release``)."""
        return self.replays.retired

    def release(self, budget: int = RELEASE_SLICE) -> bool:
        """Free up to ``budget`` retired replies; whether any are left."""
        return self.replays.release(budget)

    def _decide(
        self, data: bytes, client: str, now: int, tcp: bool
    ) -> bytes | wire.Query | Chase | None:
        """The full path: check the client, parse, apply the policy, look in the cache."""
        counters = self.counters
        if len(data) > 2 and data[2] & 0x80:
            counters.responses_ignored += 1  # a response, not a query: never answer it
            return None
        if self.on_notify is not None and len(data) > 2 and data[2] & 0x78 == 0x20:  # NOTIFY
            return self.on_notify(data, client)
        if not self.acl.allows(client):
            counters.refused_clients += 1
            counters.refused += 1
            error = self._error(data, wire.REFUSED)
            self.tallies.count_reply(error, tcp)
            return error
        try:
            query = wire.parse_query(data)
        except wire.BadVersion as bad_version:
            counters.formerr += 1
            self.tallies.count(bad_version.query.qtype, bad_version.rcode, None, tcp)
            return wire.build_reply(bad_version.query, bad_version.rcode)
        except FormError as unreadable:  # the rcode an error implies is the error's own
            counters.formerr += 1
            error = wire.build_error_reply(data, unreadable.rcode)
            self.tallies.count_reply(error, tcp)
            return error
        except NotImplementedQuery as unserved:
            counters.notimp += 1
            notimp_query = unserved.query if isinstance(unserved.query, wire.Query) else None
            error = wire.build_error_reply(data, unserved.rcode, notimp_query)
            self.tallies.count_reply(error, tcp)
            return error
        if query.qtype == wire.TYPE_AXFR or query.qtype == wire.TYPE_IXFR:
            counters.refused += 1
            self.tallies.count(query.qtype, wire.REFUSED, None, tcp)
            return wire.build_reply(query, wire.REFUSED)

        limit = MAX_TCP if tcp else udp_limit(query)
        if query.qname.endswith(RESOLVER_ARPA) and under_resolver_arpa(query.qname):
            return self._local(query, client, limit)
        policy = self._snapshot.policy
        if policy.dynamic:
            verdict, _, depends = policy.match_client(query.qname, self._scopes_of(client))
        else:
            verdict, depends = policy.match(query.qname), False
        if verdict is not None and verdict.action is not Action.ALLOW:
            action = verdict.action
            if action is not Action.TCP_ONLY or not tcp:  # tcp-only: forwarded over TCP
                target = b""
                if action is Action.REDIRECT and query.qtype not in NOT_FOLLOWED:
                    target = cname_target(verdict, query.qname)
                if action is Action.DROP or target:
                    # No answer now: dropped, or a policy CNAME (the answer goes on to the
                    # target's records and is counted when sent).
                    self.tallies.count(query.qtype, NO_ANSWER, verdict, tcp)
                    if self.query_log is not None:
                        self.query_log.record(client, query, Outcome.BLOCKED, verdict, NO_ANSWER)
                    if not target:
                        counters.dropped += 1
                        return None
                    counters.blocked += 1
                    return self._begin_chase(query, verdict, target)
                counters.blocked += 1
                reply = verdict.render(query)
                rcode = reply[3] & 0xF
                tally = self.tallies.answer(query.qtype, rcode, verdict, tcp)
                if self.query_log is not None:
                    self.query_log.record(client, query, Outcome.BLOCKED, verdict, rcode)
                if not depends and action is not Action.TCP_ONLY:
                    self.replays.remember(data, reply, query, verdict, None, now, tally)
                return reply if len(reply) <= limit else wire.build_truncated(reply)
            depends = True  # tcp-only, asked over TCP: the answer must not be replayed to UDP

        answer = self.cache.get(query.cache_key, now)
        if answer is not None:
            if verdict is None and (self._kept_facts or policy.has_response_ip):
                late, later = self._screen(answer, policy, client, query.qname)
                depends = depends or later
                if late is not None and late.action is not Action.ALLOW:
                    if late.action is not Action.TCP_ONLY or not tcp:
                        chase = self._chain_to(query, answer, late, client, now)
                        if chase is not None:
                            return chase  # the chain, then the policy's answer for its target
                        out = self._late(query, late, client, tcp)  # never replayed
                        if out is None:
                            return None
                        self.tallies.count(query.qtype, out[3] & 0xF, None, tcp)
                        return wire.fit(out, limit)
                    depends = True  # served over TCP only: not replayed to UDP
            counters.cached += 1
            tally = self.tallies.answer(query.qtype, answer[answers.RCODE], None, tcp)
            if self.log_all and self.query_log is not None:
                rcode = answer[answers.RCODE]
                self.query_log.record(client, query, Outcome.CACHED, None, rcode)
            reply = answers.render(answer, query, now)
            if not depends:
                self.replays.remember(data, reply, query, None, answer, now, tally)
            return reply if len(reply) <= limit else wire.build_truncated(reply)
        counters.cache_misses += 1
        if verdict is not None:
            query.verdict = verdict  # an allow, or tcp-only asked over TCP
        return query

    def _scopes_of(self, client: str) -> Callable[[ClientScope], bool]:
        """Whether a client scope includes ``client`` (memoised per client and scope)."""
        memo = self._scope_memo

        def applies(scope: ClientScope) -> bool:
            key = (client, id(scope))
            found = memo.get(key)
            if found is None:
                address = client_address(client)
                found = address is not None and scope.applies(address)
                if len(memo) >= 65536:
                    memo.clear()
                memo[key] = found
            return found

        return applies

    # --- queries that wait: upstream questions and followed CNAMEs -------------------

    def ask(self, waiter: Waiter) -> Question | None:
        """``waiter`` needs its question answered upstream: a new Question to send, or
        None when an identical one is in flight already (the waiter joins it)."""
        key = waiter.query.cache_key
        question = self.inflight.get(key)
        if question is not None:
            self.counters.coalesced += 1
            question.waiters.append(waiter)
            return None
        question = self.inflight[key] = Question(waiter.query, waiter, self._generation, key)
        return question

    def complete(
        self, question: Question, reply: outbound.Reply | None, upstream: str, clock: float
    ) -> Work:
        """``question`` was answered by ``upstream`` (or, with ``reply`` None, no upstream
        answered in time): cache the answer, then decide each waiter's reply, count its
        outcome and log it. ``clock`` is the monotonic time in seconds."""
        if self.inflight.get(question.key) is question:
            del self.inflight[question.key]
        now = int(clock)
        work = Work()
        answer = None
        if reply is not None:
            answer = self.cache.answer(question.key, reply, now)
            if reply.targets or (reply.addresses and self._snapshot.policy.has_response_ip):
                self.facts.keep((answer, reply.targets, reply.addresses), now)
        for waiter in question.waiters:
            if waiter.chase is not None:
                self._resume(waiter, waiter.chase, answer, now, work)
            elif answer is None:
                self._servfail(waiter, clock, work)
            else:
                self._serve(waiter, answer, upstream, now, clock, work, question.generation)
        self.tallies.count_sends(work.sends)
        return work

    def follow(self, chase: Chase, waiter: Waiter, clock: float) -> Work:
        """Go on with a client query whose policy answer is a CNAME: resolve the target
        (policy, cache, upstream) until an answer or a question to ask."""
        work = Work()
        self._step(chase, waiter, chase.names[-1], int(clock), work)
        self.tallies.count_sends(work.sends)
        return work

    def _serve(
        self,
        waiter: Waiter,
        answer: Answer,
        upstream: str,
        now: int,
        clock: float,
        work: Work,
        generation: int = -1,
    ) -> None:
        """One waiter's reply to an upstream answer. The query name is checked again when
        the policy changed while the question was out (a reload, a dated policy), then,
        when no entry covered it, the answer's CNAME chain and addresses."""
        query, client, tcp = waiter.query, waiter.client, waiter.tcp
        policy = self._snapshot.policy
        if policy.dynamic:
            verdict, _, _ = policy.match_client(query.qname, self._scopes_of(client))
        elif generation == self._generation:
            verdict = query.verdict  # type: ignore[assignment]  # as decided: no change since
        else:
            verdict = policy.match(query.qname)
        if verdict is None and (self._kept_facts or policy.has_response_ip):
            verdict, _ = self._screen(answer, policy, client, query.qname)
        if (
            verdict is None
            or verdict.action is Action.ALLOW
            or (verdict.action is Action.TCP_ONLY and tcp)
        ):
            self.counters.forwarded += 1
            self._time_forwarded(clock - waiter.started)
            if self.log_all and self.query_log is not None:
                latency = clock - waiter.started
                rcode = answer[answers.RCODE]
                self.query_log.record(
                    client, query, Outcome.FORWARDED, None, rcode, upstream, latency
                )
            reply: bytes | None = answers.render(answer, query, now)
        else:
            chase = self._chain_to(query, answer, verdict, client, now)
            if chase is not None:
                self._step(chase, waiter, chase.names[-1], now, work)
                return
            reply = self._late(query, verdict, client, tcp)
            if reply is None and tcp:
                # DROP over TCP: the connection is owed an answer; refuse instead.
                ede = wire.build_ede(verdict.policy.ede, verdict.ede_text)
                reply = wire.build_reply(query, wire.REFUSED, ede=ede)
        if reply is not None:
            if len(reply) > wire.MAX_UDP_NO_EDNS:  # a reply this short fits any client
                reply = wire.fit(reply, MAX_TCP if tcp else udp_limit(query))
            work.sends.append((waiter, reply))

    def _servfail(self, waiter: Waiter, clock: float, work: Work) -> None:
        """No upstream answered in time: the cached answer if it expired less than
        ``cache.stale_max`` ago and the policy lets it through (RFC 8767: TTL 30, EDE 3
        Stale Answer, 19 for a stale NXDOMAIN); otherwise SERVFAIL, with EDE 22."""
        query = waiter.query
        now = int(clock)
        stale = self.cache.stale(query.cache_key, now)
        if stale is not None and self._may_serve_stale(stale, waiter):
            rcode = stale[answers.RCODE]
            self.counters.stale += 1
            if self.query_log is not None:
                latency = clock - waiter.started
                self.query_log.record(waiter.client, query, Outcome.STALE, None, rcode, "", latency)
            code = wire.EDE_STALE_NXDOMAIN if rcode == wire.NXDOMAIN else wire.EDE_STALE
            ede = wire.build_ede(code, "no upstream answered")
            reply = answers.render_stale(stale, query, ede)
            limit = MAX_TCP if waiter.tcp else udp_limit(query)
            work.sends.append((waiter, wire.fit(reply, limit)))
            return
        self.counters.servfail += 1
        latency = clock - waiter.started
        self._time_servfail(latency)
        if self.query_log is not None:
            self.query_log.record(
                waiter.client, query, Outcome.SERVFAIL, None, wire.SERVFAIL, "", latency
            )
        ede = wire.build_ede(wire.EDE_NO_REACHABLE_AUTHORITY, "no upstream answered")
        work.sends.append((waiter, wire.build_reply(query, wire.SERVFAIL, ede=ede)))

    def _chain_to(
        self, query: wire.Query, answer: Answer, verdict: Verdict, client: str, now: int
    ) -> Chase | None:
        """For a policy that decided on a name in the answer's CNAME chain: the chain up to
        that name, whose records the policy then gives (as BIND does), instead of moving
        the policy's records to the query name. None when the verdict came from another
        trigger (an address, or the query name), or for an answer of no records (drop)."""
        if verdict.action is Action.DROP or verdict.action is Action.TCP_ONLY:
            return None
        policy = self._snapshot.policy
        applies = self._scopes_of(client) if policy.dynamic else everyone
        matched = self.facts.chain_name(answer, verdict, policy, applies)
        if not matched:
            return None
        chain = cname_chain(answers.render(answer, query, now), matched)
        if chain is None:
            return None
        if self.query_log is not None:
            self.query_log.record(client, query, Outcome.BLOCKED, verdict, 0)
        self.counters.blocked += 1
        ede = wire.build_ede(verdict.policy.ede, verdict.ede_text) if query.edns else b""
        chase = Chase(query, ede, verdict.answers.ttl)
        chase.take(*chain)
        return chase

    def _may_serve_stale(self, answer: Answer, waiter: Waiter) -> bool:
        """Whether the policy as it is now lets ``answer`` (expired) go to ``waiter``."""
        policy = self._snapshot.policy
        applies = self._scopes_of(waiter.client) if policy.dynamic else everyone
        verdict = stale_verdict(self.facts, answer, policy, applies, waiter.query.qname)
        return (
            verdict is None
            or verdict.action is Action.ALLOW
            or (verdict.action is Action.TCP_ONLY and waiter.tcp)
        )

    def _begin_chase(self, query: wire.Query, verdict: Verdict, target: bytes) -> Chase:
        """A policy CNAME for ``query``: the chase that follows it (begun by ``follow``)."""
        self.counters.chased += 1
        ede = wire.build_ede(verdict.policy.ede, verdict.ede_text) if query.edns else b""
        chase = Chase(query, ede, verdict.answers.ttl)
        chase.add(query.qname, target)
        return chase

    def _step(self, chase: Chase, waiter: Waiter, name: bytes, now: int, work: Work) -> None:
        """Resolve ``name``, the chain's current target, for the client of ``waiter``."""
        client, tcp = waiter.client, waiter.tcp
        limit = MAX_TCP if tcp else udp_limit(chase.query)
        policy = self._snapshot.policy
        while True:
            step = chase.step(name)
            if policy.dynamic:
                verdict, _, _ = policy.match_client(name, self._scopes_of(client))
            else:
                verdict = policy.match(name)
            if (
                verdict is None
                or verdict.action is Action.ALLOW
                or (verdict.action is Action.TCP_ONLY and tcp)
            ):
                break
            if verdict.action is Action.REDIRECT:
                target = cname_target(verdict, name)
                if target:
                    if not chase.add(name, target):
                        work.sends.append((waiter, chase.failed()))
                        return
                    name = target
                    continue
            if verdict.action is Action.DROP:
                if tcp:  # the connection is owed an answer
                    work.sends.append((waiter, chase.failed(wire.REFUSED, verdict.ede_text)))
                return
            # The target's own policy answer ends the chain.
            work.sends.append((waiter, wire.fit(chase.answer(verdict.render(step)), limit)))
            return
        answer = self.cache.get(step.cache_key, now)
        if answer is not None:
            message = answers.render(answer, step, now)
            work.sends.append((waiter, wire.fit(chase.answer(message), limit)))
            return
        sub = Waiter(step, waiter.sink, waiter.addr, client, tcp, waiter.started, chase)
        question = self.ask(sub)
        if question is not None:
            work.asks.append(question)

    def _resume(
        self, waiter: Waiter, chase: Chase, answer: Answer | None, now: int, work: Work
    ) -> None:
        """The target of a followed CNAME was answered upstream: the client's answer. When
        no upstream answered, the target's expired answer may still serve (RFC 8767)."""
        if answer is None:
            stale = self.cache.stale(waiter.query.cache_key, now)
            if stale is not None and self._may_serve_stale(stale, waiter):
                self.counters.stale += 1
                reply = chase.answer(answers.render_stale(stale, waiter.query, b""))
            else:
                reply = chase.failed(wire.SERVFAIL, "no upstream answered")
        else:
            reply = chase.answer(answers.render(answer, waiter.query, now))
        limit = MAX_TCP if waiter.tcp else udp_limit(chase.query)
        work.sends.append((waiter, wire.fit(reply, limit)))

    def _screen(
        self, answer: Answer, policy: CompiledPolicy, client: str, qname: bytes
    ) -> tuple[Verdict | None, bool]:
        """The verdict on an answer's content for ``client`` (see AnswerFacts.screen)."""
        applies = self._scopes_of(client) if policy.dynamic else everyone
        return self.facts.screen(answer, policy, applies, qname)

    def _late(self, query: wire.Query, verdict: Verdict, client: str, tcp: bool) -> bytes | None:
        """A policy answer decided after forwarding: for the original query name. (Its
        answer is counted with the other waiting queries' answers, the block here.)"""
        self.tallies.count(query.qtype, NO_ANSWER, verdict, tcp)
        if verdict.action is Action.DROP:
            self.counters.dropped += 1
            if self.query_log is not None:
                self.query_log.record(client, query, Outcome.BLOCKED, verdict, NO_ANSWER)
            return None
        self.counters.blocked += 1
        reply = verdict.render(query)
        if self.query_log is not None:
            self.query_log.record(client, query, Outcome.BLOCKED, verdict, reply[3] & 0xF)
        return reply

    def _local(self, query: wire.Query, client: str, limit: int) -> bytes:
        """resolver.arpa (RFC 9462): answered here, before the policy, never forwarded."""
        self.counters.local += 1
        if self.log_all and self.query_log is not None:
            self.query_log.record(client, query, Outcome.LOCAL, None, wire.NOERROR)
        return wire.fit(self.designated.answer(query), limit)

    @staticmethod
    def _error(data: bytes, rcode: int) -> bytes | None:
        try:
            query = wire.parse_query(data)
        except (FormError, NotImplementedQuery):
            query = None
        return wire.build_error_reply(data, rcode, query)
