"""/metrics for a zone followed from a real primary (BIND 9): the copy's serial, when it
was last transferred and refreshed, and when it expires; in one process and, with
workers, from the supervisor that does the transfers."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.procs import SinkholeFactory, free_port, wait_until

from interop.primary import ZONE, BindPrimary, new_secret
from interop.secondaries import POLICY, zone_entry

pytestmark = [pytest.mark.blackbox, pytest.mark.system("named", "nsupdate")]

EXPIRE = 86400  # the SOA expire of interop.primary's zone


def zone_series(port: int) -> dict[str, float]:
    """The zone's samples, by metric name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3.0) as response:
        text = response.read().decode()
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("zone") == ZONE
    }


@pytest.fixture
def secret_file(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    secret = new_secret()
    path = tmp_path / "xfr.secret"
    path.write_text(secret + "\n")
    yield secret, path


@pytest.mark.parametrize("workers", [1, 2])
def test_serial_transfer_refresh_and_expiry(
    sinkhole_factory: SinkholeFactory,
    tmp_path: Path,
    secret_file: tuple[str, Path],
    workers: int,
) -> None:
    secret, path = secret_file
    dns_port, metrics_port = free_port(), free_port()
    primary = BindPrimary(tmp_path / "named", ["bad.test"], [("127.0.0.1", dns_port)], secret)
    try:
        copy = tmp_path / "copies" / "rpz.example.zone"
        server = sinkhole_factory(
            {"local.yaml": POLICY},
            port=dns_port,
            zones=[zone_entry(copy, primary, path)],
            workers=workers,
            metrics=f"127.0.0.1:{metrics_port}",
        )
        before = time.time()
        server.wait_event("zone_transferred", 10.0)

        def serial_is(serial: int) -> dict[str, float] | None:
            got = zone_series(metrics_port)
            return got if got.get("sinkhole_zone_serial") == serial else None

        got = wait_until(lambda: serial_is(1), 10.0)
        assert got, zone_series(metrics_port)
        transferred = got["sinkhole_zone_last_transfer_timestamp_seconds"]
        assert before - 30 <= transferred <= time.time()
        assert got["sinkhole_zone_last_refresh_timestamp_seconds"] == transferred
        assert got["sinkhole_zone_expiry_timestamp_seconds"] == pytest.approx(transferred + EXPIRE)
        assert got["sinkhole_zone_last_failure_timestamp_seconds"] == 0
        assert got["sinkhole_zone_expired"] == 0

        serial = primary.update(add=["added.test"])  # NOTIFY: transferred again
        got = wait_until(lambda: serial_is(serial), 10.0)
        assert got, zone_series(metrics_port)
        assert got["sinkhole_zone_last_transfer_timestamp_seconds"] > transferred
    finally:
        primary.stop_named()
