"""Which clients are served: the allow list, decided once per address (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


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
