"""Policy layers, RPZ style: the YAML policies, then each RPZ zone in order, each with its
QNAME, client-IP and response-IP triggers (pure, no I/O)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import ClientScope, Network, PolicyInfo, Verdict, unscoped

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
        self, qname: bytes, applies: Callable[[ClientScope], bool] = unscoped
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
        # Zone order comes before trigger type: once a layer has response-IP triggers, the
        # layers after it cannot decide before the upstream has answered (their triggers
        # are checked with the answer, in order, by ``screen``).
        first_ip = next((i for i, layer in enumerate(layers) if layer.response_ip), len(layers))
        before_answer = layers[: first_ip + 1]
        self._deferred = first_ip + 1 < len(layers)
        self._before = tuple(layer.qname for layer in before_answer)
        stages: list[ClientTriggers | CompiledPolicy] = []
        for layer in before_answer:
            if layer.client_ip:
                stages.append(layer.client_ip)
            stages.append(layer.qname)
        self._stages = tuple(stages)
        self._responses = tuple(
            (layer.qname, layer.response_ip or None, i > first_ip) for i, layer in enumerate(layers)
        )
        self._has_response_ip = any(layer.response_ip for layer in layers)

    @property
    def has_response_ip(self) -> bool:  # type: ignore[override]
        return self._has_response_ip

    @property
    def deferred(self) -> bool:  # type: ignore[override]
        return self._deferred

    def match(self, qname: bytes) -> Verdict | None:
        for compiled in self._before:
            verdict = compiled.match(qname)
            if verdict is not None:
                return verdict
        return None

    def match_client(
        self, qname: bytes, applies: Callable[[ClientScope], bool] = unscoped
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
        applies: Callable[[ClientScope], bool] = unscoped,
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
        applies: Callable[[ClientScope], bool] = unscoped,
        qname: bytes = b"",
    ) -> tuple[Verdict | None, bool]:
        """Layer by layer: the CNAME chain's names against QNAME triggers, then the answer's
        addresses against response-IP triggers. ``qname``, the query name, is checked too
        in the layers that could not decide before the answer (see ``deferred``)."""
        depends = False
        for compiled, response_ip, waited in self._responses:
            names = (qname, *targets) if waited and qname else targets
            verdict, late = compiled.screen(names, applies=applies)
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
