"""The per-query decision, bytes in and bytes out (sans I/O).

The fast path is one flat function: client check, parse, policy, cache. Only a
cache miss leaves it, as a Query for the forwarder. Policy runs before the cache,
so the cache only ever holds upstream answers and a reload needs no flush.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Protocol

from resolver import wire
from resolver.cache import Answer, Cache
from resolver.errors import FormError, NotImplementedQuery
from resolver.policy import Action, ClientScope, CompiledPolicy, PolicyInfo, Verdict

MAX_TCP = 65535


class Outcome(enum.IntEnum):
    """How a query was answered: drives metrics labels and query-log fields."""

    BLOCKED = 1
    CACHED = 2
    FORWARDED = 3
    REFUSED = 4
    FORMERR = 5
    NOTIMP = 6
    SERVFAIL = 7
    DROPPED = 8


@dataclass(slots=True)
class Counters:
    """Plain integer counters (one per Outcome, by its lower-case name), read by /metrics."""

    blocked: int = 0
    cached: int = 0
    forwarded: int = 0
    refused: int = 0
    formerr: int = 0
    notimp: int = 0
    servfail: int = 0
    dropped: int = 0
    refused_clients: int = 0
    responses_ignored: int = 0
    upstream_failures: int = 0

    def by_outcome(self) -> dict[Outcome, int]:
        return {o: getattr(self, o.name.lower()) for o in Outcome}


@dataclass(frozen=True)
class Snapshot:
    """Everything a reload replaces, built off the hot path and swapped as one reference."""

    policy: CompiledPolicy
    policies: tuple[PolicyInfo, ...] = ()
    sources: tuple[str, ...] = ()


class QueryLog(Protocol):
    def record(
        self,
        client: str,
        query: wire.Query,
        outcome: Outcome,
        verdict: Verdict | None,
        rcode: int,
    ) -> None: ...


class ClientAcl:
    """Which client addresses are served; decisions are memoised per address string."""

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.networks = tuple(networks)
        self.seen: dict[str, bool] = {}  # decisions by address text; the engine reads it directly

    def allows(self, host: str) -> bool:
        seen = self.seen.get(host)
        if seen is None:
            seen = self._decide(host)
            if len(self.seen) >= 65536:
                self.seen.clear()
            self.seen[host] = seen
        return seen

    def _decide(self, host: str) -> bool:
        address = client_address(host)
        if address is None:
            return False
        return any(address in net for net in self.networks if net.version == address.version)


def client_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A client's address from the socket layer's text (scope ids and v4-mapped unwrapped)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def udp_limit(query: wire.Query) -> int:
    """How large an answer over UDP may be: the client's EDNS size, at most ours."""
    return min(query.udp_size, wire.EDNS_UDP_SIZE) if query.edns else wire.MAX_UDP_NO_EDNS


REPLAY_LIMIT = 200_000  # repeated questions remembered; the oldest tenth goes when full


class _Replay:
    """A reply already built for exactly these query bytes (everything after the ID).

    Most traffic repeats the same questions, byte for byte. Keyed by the query
    bytes, a repeat needs no parsing at all: a blocked answer is replayed as is,
    a cached one is re-rendered at most once a second (its TTLs count down).
    """

    __slots__ = ("answer", "body", "query", "second", "verdict")

    def __init__(
        self,
        body: bytes,
        query: wire.Query,
        verdict: Verdict | None,
        answer: Answer | None,
        second: int,
    ) -> None:
        self.body = body
        self.query = query
        self.verdict = verdict
        self.answer = answer
        self.second = second


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
        self._replay: dict[bytes, _Replay] = {}
        self._scope_memo: dict[tuple[str, int], bool] = {}
        self.cache = cache
        self._acl = acl
        self._acl_seen = acl.seen
        self.counters = counters or Counters()
        self.query_log = query_log
        self.log_all = log_all
        # NOTIFY requests (opcode 4) go here instead of being answered NOTIMP: (data, client)
        # -> the answer. Set by the composition root for the zones followed by transfer.
        self.on_notify: Callable[[bytes, str], bytes | None] | None = None

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
        self._replay = {}  # replies built under the old policy must not be replayed
        self._scope_memo = {}  # keyed by id() of the old snapshot's scopes

    def handle(self, data: bytes, client: str, now: int, tcp: bool) -> bytes | wire.Query | None:
        """Answer ``data`` from ``client``: reply bytes, a Query to forward, or None to drop."""
        replay = self._replay.get(data[2:])
        if replay is not None and (self._acl_seen.get(client) or self.acl.allows(client)):
            answer = replay.answer
            if answer is None:
                self.counters.blocked += 1
                if self.query_log is not None:
                    self.query_log.record(client, replay.query, Outcome.BLOCKED, replay.verdict, 0)
                return data[:2] + replay.body
            if answer.expires > now:  # an answer the cache evicted is expired at once
                self.cache.touch(answer.key)
                if replay.second != now:
                    self._refresh(replay, answer, now)
                self.counters.cached += 1
                if self.log_all and self.query_log is not None:
                    self.query_log.record(client, replay.query, Outcome.CACHED, None, answer.rcode)
                return data[:2] + replay.body
            del self._replay[data[2:]]
        return self._decide(data, client, now, tcp)

    def _refresh(self, replay: _Replay, answer: Answer, now: int) -> None:
        """Re-render a replayed cache answer for a new second (its TTLs count down)."""
        replay.body = answer.render(replay.query, now)[2:]
        replay.second = now

    def _remember(
        self,
        data: bytes,
        reply: bytes,
        query: wire.Query,
        verdict: Verdict | None,
        answer: Answer | None,
        now: int,
    ) -> None:
        if len(reply) > udp_limit(query):
            return  # only answers that suit both transports
        replay = self._replay
        if len(replay) >= REPLAY_LIMIT:
            for key in list(islice(replay, REPLAY_LIMIT // 10)):
                del replay[key]
        replay[data[2:]] = _Replay(reply[2:], query, verdict, answer, now)

    def policy_clock(self, now: datetime) -> list[tuple[PolicyInfo, bool]]:
        """Switch dated policies on or off at ``now``; the policies that changed."""
        changed = self._snapshot.policy.set_clock(now)
        if changed:
            self._replay = {}
        return changed

    def _decide(self, data: bytes, client: str, now: int, tcp: bool) -> bytes | wire.Query | None:
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
            return self._error(data, wire.REFUSED)
        try:
            query = wire.parse_query(data)
        except wire.BadVersion as exc:
            counters.formerr += 1
            return wire.build_reply(exc.query, wire.BADVERS)
        except FormError:
            counters.formerr += 1
            return wire.build_error_reply(data, wire.FORMERR)
        except NotImplementedQuery as exc:
            counters.notimp += 1
            notimp_query = exc.query if isinstance(exc.query, wire.Query) else None
            return wire.build_error_reply(data, wire.NOTIMP, notimp_query)
        if query.qtype == wire.TYPE_AXFR or query.qtype == wire.TYPE_IXFR:
            counters.refused += 1
            return wire.build_reply(query, wire.REFUSED)

        limit = MAX_TCP if tcp else udp_limit(query)
        policy = self._snapshot.policy
        if policy.dynamic:
            verdict, _, depends = policy.match_client(query.qname, self._scopes_of(client))
        else:
            verdict, depends = policy.match(query.qname), False
        if verdict is not None and verdict.action is not Action.ALLOW:
            action = verdict.action
            if action is not Action.TCP_ONLY or not tcp:  # tcp-only: forwarded over TCP
                if self.query_log is not None:
                    self.query_log.record(client, query, Outcome.BLOCKED, verdict, 0)
                if action is Action.DROP:
                    counters.dropped += 1
                    return None
                counters.blocked += 1
                reply = verdict.render(query)
                if not depends and action is not Action.TCP_ONLY:
                    self._remember(data, reply, query, verdict, None, now)
                return reply if len(reply) <= limit else wire.build_truncated(reply)

        answer = self.cache.get(query.cache_key, now)
        if answer is not None:
            counters.cached += 1
            if self.log_all and self.query_log is not None:
                self.query_log.record(client, query, Outcome.CACHED, None, answer.rcode)
            reply = answer.render(query, now)
            if not depends:
                self._remember(data, reply, query, None, answer, now)
            return reply if len(reply) <= limit else wire.build_truncated(reply)
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

    def answer_from_upstream(self, query: wire.Query, reply: wire.Reply, now: int) -> Answer:
        """Cache (when allowed) and return the servable form of an upstream reply."""
        return self.cache.answer(query.cache_key, reply, now)

    @staticmethod
    def _error(data: bytes, rcode: int) -> bytes | None:
        try:
            query = wire.parse_query(data)
        except (FormError, NotImplementedQuery):
            query = None
        return wire.build_error_reply(data, rcode, query)
