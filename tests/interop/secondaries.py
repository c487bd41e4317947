"""Sinkhole servers that follow the BIND primary, on addresses and ports a test chooses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.procs import Sinkhole, SinkholeFactory, free_port

from interop.primary import ALGORITHM, KEY_NAME, ZONE, BindPrimary

# A YAML policy next to the zone: the health-check name of the dnsdist test, and a
# name that proves the ordinary policies still apply.
POLICY = "id: local\nblock:\n  - health.scaleout.test\n  - yaml-blocked.test\n"


def zone_entry(
    copy: Path, primary: BindPrimary | str, secret_file: Path | None, **extra: Any
) -> dict[str, Any]:
    """One ``zones:`` entry following ZONE from ``primary`` (an endpoint text, or BIND)."""
    endpoint = primary if isinstance(primary, str) else primary.endpoint
    entry: dict[str, Any] = {"name": ZONE, "file": str(copy), "primaries": [endpoint]}
    if secret_file is not None:
        entry["tsig"] = {"name": KEY_NAME, "algorithm": ALGORITHM, "secret_file": str(secret_file)}
    entry.update(extra)
    return entry


class Fleet:
    """Secondaries started through a ``sinkhole_factory`` (which stops them on teardown)."""

    def __init__(self, factory: SinkholeFactory) -> None:
        self.factory = factory

    def port(self, host: str = "127.0.0.1") -> int:
        return free_port(host)

    def start(
        self,
        name: str,
        zones: list[dict[str, Any]],
        port: int,
        host: str = "127.0.0.1",
        workers: int = 1,
    ) -> Sinkhole:
        """A server on ``host:port`` following ``zones`` (its files in ``workdir/name``)."""
        policies = {"local.yaml": POLICY}
        return self.factory(policies, name=name, host=host, port=port, zones=zones, workers=workers)

    def close(self) -> list[str]:
        """Stop every server still running; describe those that did not exit 0."""
        return self.factory.close()
