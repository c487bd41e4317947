"""`sinkhole export-rpz` round trip: Unbound (Debian) loading the exported zone answers as
sinkhole does, name for name: same rcode, same addresses, both silent for a drop.

Unbound runs on a free loopback port with the zone as an ``rpz:`` zonefile and forwards
to the same fake upstream as sinkhole, so every allowed name gets the same answer.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest
from support.procs import (
    REPO,
    FakeUpstream,
    Sinkhole,
    SinkholeFactory,
    free_port,
)
from support.unbound import UnboundProcess

from resolver.core import wire
from resolver.core.matcher import Scope
from resolver.sources.config import load_config
from resolver.sources.snapshot import build_snapshot

pytestmark = [pytest.mark.blackbox, pytest.mark.system("unbound", "unbound-checkconf")]

ORIGIN = "rpz.sinkhole.invalid"
ANSWER_TIMEOUT = 1.0

FORMS = """\
id: forms
reference: Every form and action
action: nxdomain
block:
  - nx.example
  - "=exact.example"
  - "*.below.example"
  - name: nodata.example
    action: nodata
  - name: dropped.example
    action: drop
  - name: page.example
    action: warning-page
  - name: "*.wild.example"
    action: nodata
  - name: deep.exempt.nx.example
    action: warning-page
allow:
  - exempt.nx.example
  - "=one.wild.example"
"""


class Unbound(UnboundProcess):
    """``unbound -d`` with one RPZ zonefile, forwarding everything to ``upstream``."""

    def __init__(self, workdir: Path, zonefile: Path, upstream: FakeUpstream) -> None:
        self.port = free_port("127.0.0.1")
        config = workdir / "unbound.conf"
        config.write_text(
            f"""\
server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    chroot: ""
    username: ""
    directory: "{workdir}"
    logfile: "{workdir / "unbound.log"}"
    use-syslog: no
    pidfile: "{workdir / "unbound.pid"}"
    num-threads: 1
    module-config: "respip iterator"
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    local-zone: "example." nodefault
    local-zone: "invalid." nodefault
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: {upstream.host}@{upstream.port}
    forward-first: no
rpz:
    name: "{ORIGIN}."
    zonefile: "{zonefile}"
"""
        )
        super().__init__(config, workdir, self.port, "ready-probe.example", workdir / "unbound.log")


def ask_raw(where: tuple[str, int], name: str, qtype: str, timeout: float) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    return dns.query.udp(query, where[0], timeout=timeout, port=where[1])


def outcome(where: tuple[str, int], name: str, qtype: str) -> tuple[str, list[str]]:
    """(rcode or "no answer", the answer's addresses): what the two resolvers must agree on."""
    try:
        r = ask_raw(where, name, qtype, ANSWER_TIMEOUT)
    except dns.exception.Timeout:
        return "no answer", []
    found = sorted(rd.address for rrset in r.answer if rrset.rdtype in (1, 28) for rd in rrset)
    return dns.rcode.to_text(r.rcode()), found


def names_to_ask(config_path: Path) -> Iterator[str]:
    """Every name of the configured policies and lists, names under them, and names around."""
    result = build_snapshot(load_config(config_path))
    for policy in result.policies:
        for entry in policy.entries:
            if entry.scope is not Scope.BELOW:
                yield entry.name
            if entry.scope is not Scope.EXACT:
                yield "www." + entry.name
                yield "a.b." + entry.name
            else:
                yield "sub." + entry.name
    for report in result.reports:
        for listed in sorted(report.listed)[:50]:
            name = wire.name_to_text(listed)
            yield name
            yield "www." + name
    yield from ("unlisted.example", "www.unlisted.example", "example", "com")


@pytest.fixture
def exported(
    sinkhole_factory: SinkholeFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Sinkhole, Unbound]]:
    """(sinkhole, unbound) serving the same policies: sinkhole from the YAML files, Unbound
    from the zone ``sinkhole export-rpz`` wrote for them."""
    if request.param == "bundled":
        server = sinkhole_factory(settings={"policies": [str(REPO / "policies" / "*.yaml")]})
    else:
        server = sinkhole_factory({"forms.yaml": FORMS})
    yield from _with_unbound(server, sinkhole_factory.upstream, tmp_path)


def _with_unbound(
    server: Sinkhole, fake_upstream: FakeUpstream, tmp_path: Path
) -> Iterator[tuple[Sinkhole, Unbound]]:
    assert server.config is not None
    export = subprocess.run(
        [sys.executable, "-m", "resolver", "export-rpz", "--config", str(server.config)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert export.returncode == 0, export.stderr
    zonefile = tmp_path / "export.rpz"
    zonefile.write_text(export.stdout)
    workdir = tmp_path / "unbound"
    workdir.mkdir()
    unbound = Unbound(workdir, zonefile, fake_upstream)
    try:
        yield server, unbound
    finally:
        unbound.stop()


UPSTREAM_ANSWERS = (("NOERROR", ["198.51.100.7"]), ("NOERROR", ["2001:db8::7"]))


@pytest.mark.parametrize("exported", ["bundled", "forms"], indirect=True)
def test_unbound_with_the_exported_zone_answers_as_sinkhole(
    exported: tuple[Sinkhole, Unbound],
) -> None:
    server, unbound = exported
    assert server.config is not None
    names = list(dict.fromkeys(names_to_ask(server.config)))
    differences = []
    decided = 0
    for name in names:
        for qtype in ("A", "AAAA"):
            ours = outcome((server.host, server.port), name, qtype)
            theirs = outcome(("127.0.0.1", unbound.port), name, qtype)
            if ours != theirs:
                differences.append(f"{name} {qtype}: sinkhole {ours}, unbound {theirs}")
            decided += ours not in UPSTREAM_ANSWERS
    assert not differences, "\n".join(differences)
    # The comparison covered names the policies decide, not only forwarded ones.
    assert decided >= len(names) // 2
