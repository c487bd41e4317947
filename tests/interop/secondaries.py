"""Sinkhole servers that follow the BIND primary, on addresses and ports a test chooses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.procs import (
    FakeUpstream,
    Sinkhole,
    free_port,
    standard_settings,
    stop_all,
    write_config,
)

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
    """Starts sinkhole servers; ``close`` stops every one still running, by its PID."""

    def __init__(self, workdir: Path, upstream: FakeUpstream) -> None:
        self.workdir = workdir
        self.upstream = upstream
        self.started: list[Sinkhole] = []

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
        """A server listening on ``host:port`` (config and policy in ``workdir/name``)."""
        workdir = self.workdir / name
        (workdir / "policies").mkdir(parents=True, exist_ok=True)
        (workdir / "policies" / "local.yaml").write_text(POLICY)
        settings = standard_settings([self.upstream.endpoint])
        settings.update(listen=[f"{host}:{port}"], zones=zones, workers=workers)
        config = write_config(workdir, settings)
        server = Sinkhole(workdir, config, port, name=f"{name}-{len(self.started)}")
        server.host = host
        self.started.append(server)
        return server

    def close(self) -> list[str]:
        return stop_all(self.started)
