"""`sinkhole export-rpz`: the YAML policies as an RPZ zone that answers as sinkhole does."""

from __future__ import annotations

import io
import ipaddress
from pathlib import Path

import dns.zone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.matcher import CompiledPolicy, Scope
from resolver.core.verdict import Action, Answers, ClientScope, PolicyInfo, Redirect, Verdict
from resolver.service import cli
from resolver.sources.config import Config
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rpz import parse_zone
from resolver.tools.export import write_zone

ANSWERS = Answers((ipaddress.IPv4Address("192.0.2.80"),), (ipaddress.IPv6Address("2001:db8::80"),))
INFO = PolicyInfo(id="court", source="court.yaml", reference="Order 7", title="Court order")
ORIGIN = "rpz.sinkhole.invalid."


def verdict(action: Action, reference: str = "", redirect: Redirect | None = None) -> Verdict:
    return Verdict(INFO, action, ANSWERS, 0, reference, redirect=redirect)


def export(
    *entries: tuple[str, Scope, Verdict], policies: tuple[PolicyFile, ...] = ()
) -> tuple[str, list[str]]:
    compiled = CompiledPolicy.build((wire.text_to_name(n), s, v) for n, s, v in entries)
    out = io.StringIO()
    warnings = write_zone(out, compiled, policies, ORIGIN, Config(source="c.yaml"), 42)
    return out.getvalue(), warnings


def records(text: str) -> list[str]:
    """The zone's records as "owner type data", comments and the apex left out."""
    zone = dns.zone.from_text(text, ORIGIN, relativize=True, check_origin=True)
    out = []
    for name, rdataset in zone.iterate_rdatasets():
        if name.to_text() == "@":
            continue
        out.extend(f"{name} {rdataset.rdtype.name} {rd}" for rd in rdataset)
    return sorted(out)


def test_each_action_in_its_rpz_form() -> None:
    text, warnings = export(
        ("page.example", Scope.SUBTREE, verdict(Action.WARNING_PAGE)),
        ("nx.example", Scope.EXACT, verdict(Action.NXDOMAIN)),
        ("nodata.example", Scope.EXACT, verdict(Action.NODATA)),
        ("drop.example", Scope.EXACT, verdict(Action.DROP)),
        ("tcp.example", Scope.EXACT, verdict(Action.TCP_ONLY)),
        ("refused.example", Scope.EXACT, verdict(Action.REFUSE)),
        ("ok.page.example", Scope.EXACT, verdict(Action.ALLOW)),
        ("cname.example", Scope.EXACT, verdict(Action.REDIRECT, redirect=Redirect(cname="x.test"))),
        (
            "to.example",
            Scope.EXACT,
            verdict(Action.REDIRECT, redirect=Redirect((ipaddress.IPv4Address("192.0.2.9"),))),
        ),
    )
    assert records(text) == sorted(
        [
            "page.example A 192.0.2.80",
            "page.example AAAA 2001:db8::80",
            "*.page.example A 192.0.2.80",
            "*.page.example AAAA 2001:db8::80",
            "nx.example CNAME .",
            "nodata.example CNAME *.",
            "drop.example CNAME rpz-drop.",
            "tcp.example CNAME rpz-tcp-only.",
            "refused.example CNAME .",
            "ok.page.example CNAME rpz-passthru.",
            # the names under an exempted name are still under the blocked subtree
            "*.ok.page.example A 192.0.2.80",
            "*.ok.page.example AAAA 2001:db8::80",
            "cname.example CNAME x.test.",
            "to.example A 192.0.2.9",
        ]
    )
    assert warnings == ["1 names with action refuse are exported as NXDOMAIN: RPZ has no refuse"]


def test_entry_forms_and_the_comments() -> None:
    text, _ = export(
        ("sub.example", Scope.SUBTREE, verdict(Action.NXDOMAIN, reference="Order 8")),
        ("only.example", Scope.EXACT, verdict(Action.NXDOMAIN)),
        ("under.example", Scope.BELOW, verdict(Action.NXDOMAIN)),
    )
    assert records(text) == sorted(
        [
            "sub.example CNAME .",
            "*.sub.example CNAME .",
            "only.example CNAME .",
            "*.under.example CNAME .",
        ]
    )
    assert "sub.example 60 CNAME . ; court: Order 8\n" in text
    assert "only.example 60 CNAME . ; court: Order 7\n" in text
    assert "@ SOA localhost. hostmaster.localhost. 42 " in text


def test_a_wildcard_hidden_by_a_more_specific_name_is_written_out() -> None:
    text, _ = export(
        ("example", Scope.BELOW, verdict(Action.NXDOMAIN)),
        ("a.b.example", Scope.EXACT, verdict(Action.ALLOW)),
    )
    assert records(text) == sorted(
        [
            "*.example CNAME .",
            "a.b.example CNAME rpz-passthru.",
            "*.a.b.example CNAME .",  # a.b.example exists: *.example no longer reaches below it
            "b.example CNAME .",  # an empty non-terminal: it would hide *.example
            "*.b.example CNAME .",
        ]
    )


def test_client_scoped_entries_are_left_out_with_a_warning() -> None:
    scoped = Verdict(
        INFO, Action.NXDOMAIN, ANSWERS, 0, scope=ClientScope((ipaddress.ip_network("10.0.0.0/8"),))
    )
    policy = PolicyFile(INFO, Action.NXDOMAIN, clients=scoped.scope)
    text, warnings = export(("school.example", Scope.SUBTREE, scoped), policies=(policy,))
    assert records(text) == []
    assert "applies to some clients only" in warnings[0]
    assert ";   court: Court order | reference: Order 7 | file: court.yaml" in text


# --- the zone answers as sinkhole does -----------------------------------------------------

LABELS = st.sampled_from(["a", "b", "c"])
NAMES = st.lists(LABELS, min_size=1, max_size=3).map(".".join)
KINDS = [Action.NXDOMAIN, Action.NODATA, Action.DROP, Action.ALLOW, Action.WARNING_PAGE]


def dns_semantics(owners: dict[str, str], qname: str) -> str | None:
    """What a resolver that finds RPZ triggers like DNS data answers (RFC 4592: a query for
    an existing name gets its records, else the wildcard at the closest encloser)."""
    if qname in owners:
        return owners[qname]
    nodes = {""}
    for owner in owners:
        labels = owner.split(".")
        nodes.update(".".join(labels[i:]) for i in range(len(labels)))
    if qname in nodes:
        return None  # an empty non-terminal: no wildcard applies to it
    labels = qname.split(".")
    for i in range(1, len(labels) + 1):
        encloser = ".".join(labels[i:])
        if encloser in nodes:
            return owners.get(f"*.{encloser}" if encloser else "*")
    return None


def kind_of(verdict: Verdict | None) -> str | None:
    if verdict is None:
        return None
    if verdict.action in (Action.WARNING_PAGE, Action.REDIRECT):
        return "data"
    return verdict.action.name


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(NAMES, st.sampled_from(list(Scope)), st.sampled_from(KINDS)),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.lists(LABELS, min_size=1, max_size=5).map(".".join), min_size=1, max_size=10),
)
def test_the_exported_zone_decides_every_name_as_sinkhole(
    entries: list[tuple[str, Scope, Action]], queries: list[str]
) -> None:
    verdicts = {kind: verdict(kind) for kind in KINDS}
    compiled = CompiledPolicy.build((wire.text_to_name(n), s, verdicts[k]) for n, s, k in entries)
    text, _ = export(*((n, s, verdicts[k]) for n, s, k in entries))
    reread = parse_zone(text, ORIGIN).layer.qname
    owners: dict[str, str] = {}
    for line in records(text):
        owner, rdtype, data = line.split(" ", 2)
        owners[owner] = data if rdtype == "CNAME" else "data"
    rpz_kind = {
        ".": "NXDOMAIN",
        "*.": "NODATA",
        "rpz-drop.": "DROP",
        "rpz-passthru.": "ALLOW",
        "data": "data",
    }
    for name in queries + [n for n, _, _ in entries]:
        expected = kind_of(compiled.match(wire.text_to_name(name)))
        assert kind_of(reread.match(wire.text_to_name(name))) == expected, name
        found = dns_semantics(owners, name)
        assert (rpz_kind[found] if found else None) == expected, (name, text)


# --- the command ---------------------------------------------------------------------------


def test_the_command_writes_the_configured_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "court.yaml").write_text(
        "id: court\nreference: Order 9\nblock: [blocked.example]\nallow: [ok.blocked.example]\n"
    )
    config = tmp_path / "c.yaml"
    config.write_text("upstreams: []\npolicies: [p/*.yaml]\nwarning_page: {ipv4: 192.0.2.1}\n")
    assert cli.main(["export-rpz", "--config", str(config), "--origin", "Court.RPZ"]) == 0
    out = capsys.readouterr().out
    zone = dns.zone.from_text(out, "court.rpz.", relativize=True)
    assert zone.get_rdataset("blocked.example", "A") is not None
    assert str(zone.get_rdataset("ok.blocked.example", "CNAME")[0]) == "rpz-passthru."
    assert ";   court: reference: Order 9 | file: " in out


def test_the_command_reports_a_broken_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text("id: bad\nblock: [twitter.com/x]\n")
    config = tmp_path / "c.yaml"
    config.write_text("upstreams: []\npolicies: [bad.yaml]\n")
    assert cli.main(["export-rpz", "--config", str(config)]) == 1
    assert "bad.yaml:2" in capsys.readouterr().err
