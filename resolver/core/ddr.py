"""Discovery of Designated Resolvers (RFC 9462): the answers for ``resolver.arpa``.

A client that knows only this resolver's address asks ``_dns.resolver.arpa`` SVCB and
learns the encrypted endpoints (DoT, DoH) to upgrade to. The SVCB records (RFC 9460,
with the DNS keys of RFC 9461) are built once from the configuration; every other
question about ``resolver.arpa`` or a name under it gets NODATA, and so does the SVCB
question when no encrypted listener is configured (RFC 9462 section 8). Pure: the engine
asks ``answer`` for the few queries whose name ends in ``resolver.arpa``.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from typing import Final

from resolver.core import wire
from resolver.core.endpoint import Endpoint

TYPE_SVCB = 64
RESOLVER_ARPA = wire.text_to_name("resolver.arpa")
DDR_NAME = wire.text_to_name("_dns.resolver.arpa")
DOH_PATH = "/dns-query"
DOH_TEMPLATE = DOH_PATH + "{?dns}"
TTL = 300  # how long a client keeps the designation before asking again

# SvcParamKeys (RFC 9460 section 14.3.2, RFC 9461 section 5).
KEY_ALPN: Final = 1
KEY_PORT: Final = 3
KEY_IPV4HINT: Final = 4
KEY_IPV6HINT: Final = 6
KEY_DOHPATH: Final = 7

_U16 = struct.Struct("!H")
_SOA_NAME = wire.text_to_name("resolver.arpa")
_SOA_RNAME = wire.text_to_name("hostmaster.sinkhole.invalid")


def under_resolver_arpa(qname: bytes) -> bool:
    """Whether ``qname`` (wire form, lower case) is ``resolver.arpa`` or a name under it,
    label by label (not merely ending in the same octets)."""
    if not qname.endswith(RESOLVER_ARPA):
        return False
    cut = len(qname) - len(RESOLVER_ARPA)
    pos = 0
    while pos < cut:
        pos += qname[pos] + 1
    return pos == cut


def svcb_rdata(
    priority: int,
    target: bytes,
    alpn: Sequence[str],
    port: int,
    hints: Iterable[str] = (),
    dohpath: str = "",
) -> bytes:
    """SVCB rdata in ServiceMode: priority, target name (wire form), then the parameters
    in ascending key order."""
    params = [(KEY_ALPN, b"".join(bytes((len(p),)) + p.encode("ascii") for p in alpn))]
    params.append((KEY_PORT, _U16.pack(port)))
    addresses = [ipaddress.ip_address(h) for h in hints]
    v4 = b"".join(a.packed for a in addresses if a.version == 4)
    v6 = b"".join(a.packed for a in addresses if a.version == 6)
    if v4:
        params.append((KEY_IPV4HINT, v4))
    if v6:
        params.append((KEY_IPV6HINT, v6))
    if dohpath:
        params.append((KEY_DOHPATH, dohpath.encode("utf-8")))
    body = b"".join(_U16.pack(key) + _U16.pack(len(value)) + value for key, value in params)
    return _U16.pack(priority) + target + body


def _by_port(endpoints: Sequence[Endpoint]) -> dict[int, list[str]]:
    """Ports in the order first listed, each with the specific addresses on it as hints
    (a wildcard address gives none: the client uses the address it asked)."""
    ports: dict[int, list[str]] = {}
    for endpoint in endpoints:
        hints = ports.setdefault(endpoint.port, [])
        if not ipaddress.ip_address(endpoint.host).is_unspecified and endpoint.host not in hints:
            hints.append(endpoint.host)
    return ports


def designations(
    name: str, tls: Sequence[Endpoint], https: Sequence[Endpoint]
) -> tuple[bytes, ...]:
    """The SVCB rdata for the DoH endpoints (alpn h2, the /dns-query template), then the
    DoT ones (alpn dot), one record per port, priorities in that order. ``name`` is the
    name the certificate is for (the clients' authentication name); "" for the root."""
    target = wire.text_to_name(name) if name else b"\x00"
    out: list[bytes] = []
    for port, hints in _by_port(https).items():
        out.append(svcb_rdata(len(out) + 1, target, ("h2",), port, hints, DOH_TEMPLATE))
    for port, hints in _by_port(tls).items():
        out.append(svcb_rdata(len(out) + 1, target, ("dot",), port, hints))
    return tuple(out)


class Designated:
    """The answers for ``resolver.arpa`` and below, given the SVCB rdata to designate."""

    __slots__ = ("records",)

    def __init__(self, records: Sequence[bytes] = ()) -> None:
        self.records = tuple(records)

    def answer(self, query: wire.Query) -> bytes:
        """The SVCB records for ``_dns.resolver.arpa`` SVCB; NODATA for anything else."""
        if query.qname == DDR_NAME and query.qtype == TYPE_SVCB and self.records:
            body = b"".join(wire.build_record(TYPE_SVCB, TTL, r) for r in self.records)
            return wire.build_reply(query, wire.NOERROR, body, len(self.records))
        soa = wire.build_soa_rdata(_SOA_NAME, _SOA_RNAME, 1, TTL)
        authority = wire.build_record(wire.TYPE_SOA, TTL, soa, owner=_SOA_NAME)
        return wire.build_reply(query, wire.NOERROR, authority=authority, nscount=1)
