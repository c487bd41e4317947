"""Policy files: good ones give entries with line numbers; each mistake is shown at file:line."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from resolver.core import wire
from resolver.core.errors import PolicyError
from resolver.core.matcher import Scope
from resolver.core.verdict import EVERYONE, Action, Answers, ClientScope, Redirect
from resolver.sources import yamlsource
from resolver.sources.lists import FORMATS
from resolver.sources.policy_entries import BLOCK_ACTIONS, Entry
from resolver.sources.policy_lists import ListRef
from resolver.sources.policy_yaml import PolicyFile, load_policy, parse_policy

SOURCE = "policies/test.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
# A national order.
id: kr-national-security
title: Blocking of propaganda sites
authority: Korea Communications Standards Commission
legal_basis: National Security Act, Article 7
reference: KCSC decision 2010-08
contact: https://www.kcsc.or.kr/
description: |
  Two lines
  of text.
action: warning-page
block:
  - Uriminzokkiri.COM.
  - name: dprk-propaganda.example
    reference: KCSC decision 2016-12
    reason: propaganda
  - name: gone.example
    action: nxdomain
  - "=exact.example"
  - "*.below.example"
  - bücher.example
allow:
  - safe.uriminzokkiri.com
  - name: "=ok.example"
lists:
  - file: lists/a.txt
  - file: lists/b.hosts
    format: hosts
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "a.txt").write_text("ads.example\n")
    (tmp_path / "lists" / "b.hosts").write_text("0.0.0.0 ads.example\n")
    return tmp_path


def parse(text: str, base_dir: Path = Path("/nonexistent")) -> PolicyFile:
    return parse_policy(textwrap.dedent(text), SOURCE, base_dir)


def error(text: str, base_dir: Path = Path("/nonexistent")) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(textwrap.dedent(text), SOURCE, base_dir)
    err = info.value
    assert err.source == SOURCE
    assert str(err).startswith(f"{SOURCE}:{err.line}:" if err.line else f"{SOURCE}: ")
    assert "\n" not in str(err)
    return err


def test_good_policy(base: Path) -> None:
    policy = parse_policy(GOOD, SOURCE, base)
    info = policy.info
    assert info.id == "kr-national-security"
    assert info.source == SOURCE
    assert info.title == "Blocking of propaganda sites"
    assert info.authority == "Korea Communications Standards Commission"
    assert info.legal_basis == "National Security Act, Article 7"
    assert info.reference == "KCSC decision 2010-08"
    assert info.ede == wire.EDE_CENSORED  # the default when an authority is named
    assert policy.contact == "https://www.kcsc.or.kr/"
    assert policy.description == "Two lines\nof text."
    assert policy.action is Action.WARNING_PAGE
    assert policy.entries == (
        Entry("uriminzokkiri.com", Scope.SUBTREE, Action.WARNING_PAGE, line=13, column=5),
        Entry(
            "dprk-propaganda.example",
            Scope.SUBTREE,
            Action.WARNING_PAGE,
            reference="KCSC decision 2016-12",
            reason="propaganda",
            line=14,
            column=5,
        ),
        Entry("gone.example", Scope.SUBTREE, Action.NXDOMAIN, line=17, column=5),
        Entry("exact.example", Scope.EXACT, Action.WARNING_PAGE, line=19, column=5),
        Entry("below.example", Scope.BELOW, Action.WARNING_PAGE, line=20, column=5),
        Entry("xn--bcher-kva.example", Scope.SUBTREE, Action.WARNING_PAGE, line=21, column=5),
        Entry("safe.uriminzokkiri.com", Scope.SUBTREE, Action.ALLOW, line=23, column=5),
        Entry("ok.example", Scope.EXACT, Action.ALLOW, line=24, column=5),
    )
    assert policy.lists == (
        ListRef(base / "lists" / "a.txt", "domains", 26, 5),
        ListRef(base / "lists" / "b.hosts", "hosts", 27, 5),
    )


def test_minimal_policy() -> None:
    policy = parse("id: minimal\n")
    assert policy.info.id == "minimal"
    assert policy.info.ede == wire.EDE_BLOCKED
    assert policy.action is Action.WARNING_PAGE
    assert policy.entries == ()
    assert policy.lists == ()


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("nxdomain", Action.NXDOMAIN),
        ("NODATA", Action.NODATA),
        ("refuse", Action.REFUSE),
        ("drop", Action.DROP),
        ("warning-page", Action.WARNING_PAGE),
    ],
)
def test_policy_actions(action: str, expected: Action) -> None:
    policy = parse(f"id: p\naction: {action}\nblock: [a.example]\n")
    assert policy.action is expected
    assert policy.entries[0].action is expected


@pytest.mark.parametrize(("ede", "code"), [("blocked", 15), ("censored", 16), ("Filtered", 17)])
def test_ede(ede: str, code: int) -> None:
    assert parse(f"id: p\nauthority: A court\nede: {ede}\n").info.ede == code


def test_empty_lists_are_fine() -> None:
    policy = parse("id: p\nblock: []\nallow:\n")
    assert policy.entries == ()


def test_single_name_without_a_list() -> None:
    assert parse("id: p\nblock: one.example\n").entries[0].name == "one.example"


def test_top_level_name_may_be_allowed_or_blocked_exactly() -> None:
    policy = parse("id: p\nblock: ['=example']\nallow: [test]\n")
    assert [(e.name, e.scope) for e in policy.entries] == [
        ("example", Scope.EXACT),
        ("test", Scope.SUBTREE),
    ]


def test_load_policy_records_sha256(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"id: hashed\nblock: [a.example]\n")
    policy = load_policy(path)
    assert policy.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert policy.info.source == str(path)


def test_load_policy_lists_relative_to_the_file(base: Path) -> None:
    (base / "p.yaml").write_text("id: p\nlists:\n  - file: lists/a.txt\n")
    policy = load_policy(base / "p.yaml")
    assert policy.lists[0].path == base / "lists" / "a.txt"


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("https://example.com/page", "DNS can only block whole names"),
        ("example.com/page", "DNS can only block whole names"),
        ("example.com:443", "port"),
        ("192.0.2.1", "IP address"),
        ("'2001:db8::1'", "IP address"),
        ("example .com", "space"),
        ("-bad-.example", "not a valid domain name"),
        ("a..example", "not a valid domain name"),
        ("ex*ample.com", "wildcard"),
        ("com", "top-level domain"),
        ("'*.com'", "top-level domain"),
        ("yes", "must be text"),
        ("[a.example]", "must be text"),
    ],
)
def test_bad_block_entries(entry: str, words: str) -> None:
    err = error(f"id: p\nblock:\n  - good.example\n  - {entry}\n")
    assert err.line == 4
    assert words in err.message


def test_bad_allow_entry() -> None:
    err = error("id: p\nallow:\n  - https://good.example/\n")
    assert err.line == 3
    assert "DNS can only block whole names" in err.message


def test_bad_name_in_a_mapping_entry_points_at_the_name() -> None:
    err = error("id: p\nblock:\n  - reference: x\n    name: example.com:80\n")
    assert err.line == 4
    assert "port" in err.message


def test_unquoted_wildcard_says_to_quote_it() -> None:
    """``- *.example.com`` is a YAML alias; the message must tell the user to quote it."""
    err = error("id: p\nblock:\n  - good.example\n  - *.example.com\n")
    assert err.line == 4
    assert "quote" in err.message
    assert '"*.example.com"' in err.message


def test_unquoted_wildcard_in_a_mapping_entry_says_to_quote_it() -> None:
    err = error("id: p\nblock:\n  - name: *.example.com\n")
    assert err.line == 3
    assert "quote" in err.message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("id: p\ntitel: x\n", 2, "'titel'"),
        ("id: p\nblock:\n  - name: a.example\n    comment: x\n", 4, "'comment'"),
        ("id: p\nlists:\n  - file: a.txt\n    fmt: hosts\n", 4, "'fmt'"),
        ("id: p\naction: block\n", 2, "action must be one of"),
        ("id: p\naction: allow\n", 2, "action must be one of"),
        ("id: p\nblock:\n  - name: a.example\n    action: rpz\n", 4, "action must be one of"),
        ("id: p\nblock:\n  - name: a.example\n    action: tcp-only\n", 4, "action must be one of"),
        ("id: p\nallow:\n  - name: a.example\n    action: nxdomain\n", 4, "cannot have action"),
        ("id: p\nblock:\n  - reference: x\n", 3, "needs a name"),
        ("id: p\nede: angry\n", 2, "ede must be one of"),
        ("title: no id\n", 1, "no id"),
        ("id: two words\n", 1, "one word"),
        ("id: ''\n", 1, "one word"),
        ("id: p\nid: q\n", 2, "twice"),
        ("- a.example\n", 1, "mapping"),
        ("id: p\nlists: a.txt\n", 2, "must be a list"),
        ("id: p\nlists:\n  - format: hosts\n", 3, "needs a file"),
        ("id: p\nblock:\n\t- a.example\n", 3, "tabs"),
    ],
)
def test_policy_errors(text: str, line: int, words: str) -> None:
    err = error(text)
    assert err.line == line
    assert words in err.message


def test_missing_list_file_is_an_error(base: Path) -> None:
    err = error("id: p\nlists:\n  - file: lists/a.txt\n  - file: lists/missing.txt\n", base)
    assert err.line == 4
    assert "missing.txt" in err.message
    assert "does not exist" in err.message


def test_bad_list_format(base: Path) -> None:
    err = error("id: p\nlists:\n  - file: lists/a.txt\n    format: rpz\n", base)
    assert err.line == 4
    assert "format" in err.message


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value)


def test_policy_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("id: p\ntitle: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert "UTF-8" in str(info.value)


# --- metadata and dates ------------------------------------------------------------------

FULL = """\
id: court-order
title: Court order
authority: District Court
legal_basis: Act 1, Article 2
reference: 2-518/2026
contact: clerk@court.example
description: Why.
message: Blocked by court order 2-518/2026.
effective_from: 2026-01-01
expires: 2027-01-01T09:00:00+09:00
ttl: 300
warning_page:
  ipv4: [198.51.100.80, 198.51.100.81]
  ipv6: 2001:db8::80
block: [a.example]
"""


def test_metadata_fills_policy_info() -> None:
    policy = parse(FULL)
    info = policy.info
    assert (info.title, info.authority, info.legal_basis, info.reference) == (
        "Court order",
        "District Court",
        "Act 1, Article 2",
        "2-518/2026",
    )
    assert info.contact == policy.contact == "clerk@court.example"
    assert info.message == "Blocked by court order 2-518/2026."
    assert policy.description == "Why."
    assert info.effective_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert info.expires == datetime(2027, 1, 1, 9, tzinfo=timezone(timedelta(hours=9)))
    assert info.expires == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    assert policy.ttl == 300
    assert policy.warning_page == Answers(
        (ipaddress.IPv4Address("198.51.100.80"), ipaddress.IPv4Address("198.51.100.81")),
        (ipaddress.IPv6Address("2001:db8::80"),),
        300,
    )


def test_dates_make_the_policy_active_between_them() -> None:
    info = parse(FULL).info
    assert not info.active(datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert info.active(datetime(2026, 1, 1, tzinfo=UTC))
    assert info.active(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not info.active(datetime(2027, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
        ("'2026-01-01'", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T09:00:00Z", datetime(2026, 1, 1, 9, tzinfo=UTC)),
        ("2026-01-01 09:00:00+09:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("'2026-01-01T09:30+09:00'", datetime(2026, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_date_forms(text: str, expected: datetime) -> None:
    moment = parse(f"id: p\neffective_from: {text}\n").info.effective_from
    assert moment == expected
    assert moment is not None and moment.tzinfo is not None


def test_no_dates_means_always() -> None:
    info = parse("id: p\n").info
    assert info.effective_from is None and info.expires is None
    assert info.active(datetime(1970, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "id: p\neffective_from: 2026-01-01T09:00:00\n",
            2,
            "add one, like 2026-01-01T09:00:00+09:00",
        ),
        ("id: p\nexpires: '2026-01-01 09:00'\n", 2, "has no time zone"),
        ("id: p\nexpires: 2026-13-01\n", 2, "write dates as year-month-day"),
        ("id: p\nexpires: next year\n", 2, "write it as 2026-01-01"),
        ("id: p\nexpires: 2026\n", 2, "must be a date"),
        ("id: p\nexpires:\n", 2, "must be a date"),
        ("id: p\neffective_from: 2026-02-01\nexpires: 2026-01-01\n", 3, "must be after"),
        ("id: p\neffective_from: 2026-01-01\nexpires: 2026-01-01\n", 3, "must be after"),
    ],
)
def test_date_errors(text: str, line: int, words: str) -> None:
    err = error(text)
    assert err.line == line
    assert words in err.message


def test_text_fields_keep_numbers_and_dates_as_written() -> None:
    """YAML would read 0x1F as 31, 12:30 as 750 and 010 as 8; a reference means what it says."""
    policy = parse(
        "id: 2026\ntitle: 0x1F\nreference: 12:30\nlegal_basis: 010\ncontact: 2026-01-01\n"
    )
    assert policy.info.id == "2026"
    assert policy.info.title == "0x1F"
    assert policy.info.reference == "12:30"
    assert policy.info.legal_basis == "010"
    assert policy.info.contact == "2026-01-01"


def test_empty_optional_text_is_empty() -> None:
    info = parse("id: p\nauthority:\ntitle: ~\n").info
    assert (info.authority, info.title) == ("", "")
    assert info.ede == wire.EDE_BLOCKED


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("id: p\ntitle: yes\n", 2, "put it in quotes, like 'yes'"),
        ("id: p\nblock:\n  - no\n", 3, "YAML reads no as a yes/no value: put it in quotes"),
        ("id: p\nblock:\n  - name: off\n", 3, "put it in quotes, like 'off'"),
        ("id: p\nblock:\n  - On\n", 3, "like 'On'"),
        ("id: p\ntitle: [a, b]\n", 2, "must be text, not a list"),
        ("id: p\nreason: {a: b}\n", 2, "unknown key 'reason'"),
        ("id: p\nblock:\n  -\n", 3, "is empty: write a name"),
        ("id: p\nblock:\n  - 1.5\n", 3, "last label is a number"),
        ("id: p\nblock:\n  - a.example:\n", 3, "ends with a colon"),
        ("id: p\nblock:\n  - a.example\n  - A.Example.\n", 4, "already listed on line 3"),
        ("id: p\nblock:\n  - a.example\nallow:\n  - a.example\n", 5, "already listed on line 3"),
        ("id: p\nttl: !!python/name:os.system x\n", 2, "cannot read this value"),
        ("", 0, "the policy file is empty"),
        ("id: p\nexcept-clients: [10.0.0.0/8]\n", 2, "did you mean 'except_clients'?"),
    ],
)
def test_yaml_traps(text: str, line: int, words: str) -> None:
    err = error(text)
    assert err.line == line
    assert words in err.message


def test_same_name_with_other_scope_is_not_a_duplicate() -> None:
    policy = parse("id: p\nblock:\n  - a.example\n  - '=a.example'\n  - '*.a.example'\n")
    assert [e.scope for e in policy.entries] == [Scope.SUBTREE, Scope.EXACT, Scope.BELOW]


def test_same_name_for_other_clients_is_not_a_duplicate() -> None:
    policy = parse(
        "id: p\nblock:\n  - a.example\n  - name: a.example\n    action: nxdomain\n"
        "    clients: [10.0.0.0/8]\n"
    )
    assert [e.action for e in policy.entries] == [Action.WARNING_PAGE, Action.NXDOMAIN]


# --- errors point at file:line:col, one line each, with both YAML loaders ---------------


@pytest.fixture(params=["libyaml", "pure"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure":
        monkeypatch.setattr(yamlsource, "_Loader", yaml.SafeLoader)
    elif not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML without libyaml")
    else:
        monkeypatch.setattr(yamlsource, "_Loader", yaml.CSafeLoader)
    return str(request.param)


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("id: p\nblock:\n  - *.example.com\n", 3, None, '"*.example.com"'),
        ("id: p\nblock: [ok.example, *.example.com]\n", 2, None, "quote"),
        ("id: p\nblock:\n  - name: *.example.com\n", 3, None, "quote"),
        ("id: p\nallow:\n  - *example.com\n", 3, None, "quote"),
        ("id: p\nblock:\n\t- a.example\n", 3, 1, "indent with spaces, not tabs"),
        ("id: p\nblock:\n  - a.example\n\t- b.example\n", 4, 1, "indent with spaces, not tabs"),
        ("id: p\nblock:\n  - https://x.example/a\n", 3, 5, "write 'x.example'"),
        ("id: p\nblock:\n  - ok.example\n  - name: x.example:80\n", 4, 11, "write 'x.example'"),
        ("id: p\nid: q\n", 2, 1, "appears twice"),
        ("id: p\nblock:\n  - yes\n", 3, 5, "put it in quotes"),
    ],
)
def test_errors_with_both_loaders(
    loader: str, text: str, line: int, column: int | None, words: str
) -> None:
    """Column None: the YAML parser's own position (at or just after the '*' of an alias)."""
    err = error(text)
    assert err.line == line, err
    if column is None:
        column = err.column
        assert column > 0
    assert err.column == column, err
    assert words in err.message
    assert str(err).startswith(f"{SOURCE}:{line}:{column}: ")


# --- actions -------------------------------------------------------------------------------


def test_entry_actions_override_the_policy_action() -> None:
    policy = parse(
        "id: p\naction: nodata\nblock:\n  - a.example\n"
        + "".join(
            f"  - name: {label}.example\n    action: {label}\n"
            for label in ("warning-page", "nxdomain", "nodata", "refuse", "drop", "allow")
        )
    )
    assert [e.action for e in policy.entries] == [
        Action.NODATA,
        Action.WARNING_PAGE,
        Action.NXDOMAIN,
        Action.NODATA,
        Action.REFUSE,
        Action.DROP,
        Action.ALLOW,
    ]


def test_block_actions_include_redirect_but_not_tcp_only() -> None:
    assert "redirect" in BLOCK_ACTIONS
    assert "tcp-only" not in BLOCK_ACTIONS
    assert "allow" not in BLOCK_ACTIONS


def test_an_entry_under_block_with_action_allow_is_an_exemption() -> None:
    policy = parse("id: p\nblock:\n  - name: ok.example\n    action: allow\n    reason: x\n")
    assert policy.entries[0].action is Action.ALLOW


# --- redirect --------------------------------------------------------------------------------


def test_policy_redirect_to_addresses_is_the_default_target() -> None:
    policy = parse(
        "id: p\naction: redirect\n"
        "redirect: {ipv4: [192.0.2.1, 192.0.2.2], ipv6: '2001:db8::1'}\nblock: [a.example]\n"
    )
    assert policy.action is Action.REDIRECT
    assert policy.redirect == Redirect(
        (ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.2")),
        (ipaddress.IPv6Address("2001:db8::1"),),
    )
    assert policy.entries[0].action is Action.REDIRECT
    assert policy.entries[0].redirect is None  # the policy's


def test_entry_redirect_to_a_cname() -> None:
    policy = parse(
        "id: p\nblock:\n  - name: '=search.example'\n    action: redirect\n"
        "    redirect: {cname: Safe.Search.Example.}\n"
    )
    entry = policy.entries[0]
    assert entry.action is Action.REDIRECT
    assert entry.redirect == Redirect(cname="safe.search.example")
    assert policy.redirect is None


def test_a_redirect_target_alone_means_action_redirect() -> None:
    policy = parse("id: p\nblock:\n  - name: a.example\n    redirect: {ipv4: 192.0.2.9}\n")
    assert policy.entries[0].action is Action.REDIRECT


def test_entry_with_action_redirect_uses_the_policy_target() -> None:
    policy = parse(
        "id: p\nredirect: {cname: warn.example}\nblock:\n  - a.example\n"
        "  - name: b.example\n    action: redirect\n"
    )
    assert [e.action for e in policy.entries] == [Action.WARNING_PAGE, Action.REDIRECT]
    assert policy.redirect == Redirect(cname="warn.example")


def test_redirect_cname_may_use_unicode() -> None:
    policy = parse("id: p\nredirect: {cname: bücher.example}\n")
    assert policy.redirect == Redirect(cname="xn--bcher-kva.example")


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("id: p\naction: redirect\n", 2, "action redirect needs a target: add redirect:"),
        ("id: p\nblock:\n  - name: a.example\n    action: redirect\n", 4, "to this entry or"),
        ("id: p\nredirect: {}\n", 2, "has no target: add a cname or addresses"),
        ("id: p\nredirect:\n", 2, "must give its target, like redirect: {cname"),
        ("id: p\nredirect: warn.example\n", 2, "must give its target"),
        ("id: p\nredirect: {cname: a.example, ipv4: 192.0.2.1}\n", 2, "not both"),
        ("id: p\nredirect: {ipv4: 2001:db8::1}\n", 2, "put it under ipv6"),
        ("id: p\nredirect: {ipv6: 192.0.2.1}\n", 2, "put it under ipv4"),
        ("id: p\nredirect: {ipv4: [192.0.2.300]}\n", 2, "is not an IP address; write one like"),
        ("id: p\nredirect: {cname: 'http://a.example/'}\n", 2, "redirect.cname:"),
        ("id: p\nredirect: {host: a.example}\n", 2, "unknown key 'host'"),
        (
            "id: p\nblock:\n  - name: a.example\n    action: nxdomain\n"
            "    redirect: {cname: b.example}\n",
            5,
            "only used with action: redirect",
        ),
        (
            "id: p\nblock:\n  - name: a.example\n    redirect: {cname: www.a.example}\n",
            3,
            "loop",
        ),
        (
            "id: p\nredirect: {cname: x.a.example}\nblock:\n  - name: '*.a.example'\n"
            "    action: redirect\n",
            4,
            "loop",
        ),
    ],
)
def test_redirect_errors(text: str, line: int, words: str) -> None:
    err = error(text)
    assert err.line == line
    assert words in err.message


def test_redirect_exact_entry_may_point_below_itself() -> None:
    policy = parse("id: p\nblock:\n  - name: '=a.example'\n    redirect: {cname: www.a.example}\n")
    assert policy.entries[0].redirect == Redirect(cname="www.a.example")


# --- client scopes ---------------------------------------------------------------------------


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def test_policy_client_scope() -> None:
    policy = parse(
        "id: p\nclients: [10.0.0.0/8, 'fd00::/8', 192.0.2.7]\nexcept_clients: 10.99.0.0/16\n"
    )
    assert policy.clients == ClientScope(
        (net("10.0.0.0/8"), net("fd00::/8"), net("192.0.2.7/32")), (net("10.99.0.0/16"),)
    )
    assert policy.clients.applies(ipaddress.ip_address("10.1.2.3"))
    assert not policy.clients.applies(ipaddress.ip_address("10.99.2.3"))
    assert not policy.clients.applies(ipaddress.ip_address("192.0.2.8"))
    assert policy.clients.applies(ipaddress.ip_address("fd00::1"))


def test_no_client_keys_means_everyone() -> None:
    policy = parse("id: p\nblock: [a.example]\n")
    assert policy.clients is EVERYONE
    assert policy.entries[0].clients is None


def test_entry_client_scope_narrows_the_policy() -> None:
    policy = parse(
        "id: p\nclients: [10.0.0.0/8]\nexcept_clients: [10.99.0.0/16]\nblock:\n"
        "  - a.example\n"
        "  - name: b.example\n    except_clients: [10.1.0.0/16]\n"
        "  - name: c.example\n    clients: ['2001:db8::/32']\n"
    )
    a, b, c = policy.entries
    assert a.clients is None
    assert b.clients == ClientScope((net("10.0.0.0/8"),), (net("10.99.0.0/16"), net("10.1.0.0/16")))
    assert c.clients == ClientScope((net("2001:db8::/32"),), (net("10.99.0.0/16"),))


def test_allow_entries_may_have_a_client_scope() -> None:
    policy = parse("id: p\nallow:\n  - name: a.example\n    clients: [192.0.2.0/24]\n")
    assert policy.entries[0].clients == ClientScope((net("192.0.2.0/24"),))


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("id: p\nclients: [10.0.0.0/33]\n", 2, "like 192.0.2.0/24 or 2001:db8::/32"),
        ("id: p\nclients: [school]\n", 2, "is not a network"),
        ("id: p\nexcept_clients: [10.1.2.3/8]\n", 2, "write the network as '10.0.0.0/8'"),
        ("id: p\nclients: []\n", 2, "is empty"),
        ("id: p\nclients:\n  - 10.0.0.0/8\n  - 'fd00::/129'\n", 4, "is not a network"),
        ("id: p\nblock:\n  - name: a.example\n    clients: [300.0.0.0/8]\n", 4, "not a network"),
        ("id: p\nclients: [yes]\n", 2, "put it in quotes"),
    ],
)
def test_client_scope_errors(text: str, line: int, words: str) -> None:
    err = error(text)
    assert err.line == line
    assert words in err.message


# --- TTL and warning page ---------------------------------------------------------------------


def test_ttl_alone() -> None:
    policy = parse("id: p\nttl: 30\n")
    assert policy.ttl == 30
    assert policy.warning_page is None


def test_warning_page_ttl_is_the_policy_ttl() -> None:
    policy = parse("id: p\nwarning_page: {ipv4: 192.0.2.80, ttl: 10}\n")
    assert policy.ttl == 10
    assert policy.warning_page == Answers((ipaddress.IPv4Address("192.0.2.80"),), (), 10)


def test_warning_page_without_ttl() -> None:
    policy = parse("id: p\nwarning_page: {ipv6: '2001:db8::80'}\n")
    assert policy.ttl is None
    assert policy.warning_page == Answers((), (ipaddress.IPv6Address("2001:db8::80"),), 60)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("id: p\nttl: -1\n", 2, "between 0 and"),
        ("id: p\nttl: 1h\n", 2, "whole number"),
        ("id: p\nttl: 10\nwarning_page: {ipv4: 192.0.2.1, ttl: 20}\n", 3, "disagree"),
        ("id: p\nwarning_page: {ttl: 20}\n", 2, "has no address"),
        ("id: p\nwarning_page: 192.0.2.1\n", 2, "must list its addresses"),
        ("id: p\nwarning_page: {ipv4: [example.com]}\n", 2, "is not an IP address"),
        ("id: p\nwarning_page: {ip: 192.0.2.1}\n", 2, "unknown key 'ip'"),
    ],
)
def test_ttl_and_warning_page_errors(text: str, line: int, words: str) -> None:
    err = error(text)
    assert err.line == line
    assert words in err.message


# --- public suffixes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("com", "'com' is a top-level domain"),
        ("'*.com'", "top-level domain"),
        ("kr", "top-level domain"),
        ("co.kr", "'co.kr' is a public suffix"),
        ("github.io", "public suffix"),
        ("blogspot.com", "public suffix"),
        ("'*.co.uk'", "public suffix"),
        ("xyz.ck", "public suffix"),  # *.ck
        ("рф", "top-level domain"),
    ],
)
def test_public_suffix_is_refused(entry: str, words: str) -> None:
    err = error(f"id: p\nblock:\n  - {entry}\n")
    assert err.line == 3
    assert words in err.message
    assert "allow_public_suffix: true" in err.message
    assert "write the full names, such as 'example." in err.message


def test_public_suffix_refused_in_a_mapping_entry_too() -> None:
    err = error("id: p\nblock:\n  - name: github.io\n    reason: all of it\n")
    assert (err.line, err.column) == (3, 11)
    assert "add allow_public_suffix: true and a reason: to this entry" in err.message


def test_public_suffix_with_flag_and_reason_is_accepted() -> None:
    policy = parse(
        "id: p\nblock:\n  - name: github.io\n    allow_public_suffix: true\n"
        "    reason: ordered in full by the court\n"
    )
    entry = policy.entries[0]
    assert (entry.name, entry.allow_public_suffix, entry.reason) == (
        "github.io",
        True,
        "ordered in full by the court",
    )


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "id: p\nblock:\n  - name: github.io\n    allow_public_suffix: true\n",
            4,
            "needs a reason",
        ),
        (
            "id: p\nblock:\n  - name: github.io\n    allow_public_suffix: yes please\n",
            4,
            "true or false",
        ),
        ("id: p\nallow:\n  - name: x.example\n    allow_public_suffix: true\n", 4, "allow cannot"),
    ],
)
def test_allow_public_suffix_errors(text: str, line: int, words: str) -> None:
    err = error(text)
    assert err.line == line
    assert words in err.message


def test_public_suffix_may_be_exempted_or_blocked_exactly() -> None:
    policy = parse("id: p\nblock:\n  - '=co.kr'\n  - name: com\n    action: allow\nallow: [org]\n")
    assert [(e.name, e.scope, e.action) for e in policy.entries] == [
        ("co.kr", Scope.EXACT, Action.WARNING_PAGE),
        ("com", Scope.SUBTREE, Action.ALLOW),
        ("org", Scope.SUBTREE, Action.ALLOW),
    ]


def test_names_under_a_public_suffix_are_fine() -> None:
    policy = parse("id: p\nblock: [example.co.kr, user.github.io, 'www.ck']\n")
    assert [e.name for e in policy.entries] == ["example.co.kr", "user.github.io", "www.ck"]


# --- lists -------------------------------------------------------------------------------------


@pytest.fixture
def csv_base(tmp_path: Path) -> Path:
    text = "Updated: 2026-11-02\r\nip;domain;url\r\n192.0.2.1;казино.example;\r\n"
    (tmp_path / "register.csv").write_bytes(text.encode("cp1251"))
    (tmp_path / "feed.adblock").write_text("||ads.example^\n")
    return tmp_path


def test_list_formats_and_csv_options(csv_base: Path) -> None:
    policy = parse(
        """\
        id: p
        lists:
          - file: feed.adblock
            format: adblock
          - file: register.csv
            format: CSV
            column: domain
            delimiter: ";"
            encoding: cp1251
            skip_rows: 1
          - {file: register.csv, format: csv, column: 1, delimiter: ";", encoding: cp1251}
        """,
        csv_base,
    )
    assert policy.lists == (
        ListRef(csv_base / "feed.adblock", "adblock", 3, 5),
        ListRef(csv_base / "register.csv", "csv", 5, 5, "domain", ";", "cp1251", 1),
        ListRef(csv_base / "register.csv", "csv", 11, 5, 1, ";", "cp1251", 0),
    )
    assert FORMATS == ("domains", "hosts", "adblock", "csv")


@pytest.mark.parametrize(
    ("item", "line", "words"),
    [
        ("{file: register.csv, format: csv}", 3, "format csv needs column:"),
        ("{file: register.csv, format: csv, column: -1}", 3, "at least 0"),
        (
            "{file: register.csv, format: csv, column: domain, delimiter: ';'}",
            3,
            "is not in the header of register.csv (its columns: 'Updated: 2026-11-02')",
        ),
        (
            "{file: register.csv, format: csv, column: domian, delimiter: ';', skip_rows: 1,"
            " encoding: cp1251}",
            3,
            "its columns: 'ip', 'domain', 'url'",
        ),
        ("{file: register.csv, format: csv, column: 1, delimiter: ';;'}", 3, "one character"),
        ("{file: register.csv, format: csv, column: 1, encoding: cp-1251}", 3, "unknown encoding"),
        ("{file: register.csv, format: csv, column: 1, skip_rows: many}", 3, "whole number"),
        ("{file: feed.adblock, format: adblock, column: 1}", 3, "only read for format: csv"),
        ("{file: feed.adblock, encoding: cp1251}", 3, "only read for format: csv"),
        ("{file: feed.adblock, format: abp}", 3, "domains, hosts, adblock, csv"),
        ("{file: feed.adblock, fromat: adblock}", 3, "did you mean 'format'?"),
        ("feed.adblock", 3, "must be a mapping, like {file: lists/ads.txt}"),
        ("{file: missing.txt}", 3, "does not exist; check the path"),
    ],
)
def test_list_errors(csv_base: Path, item: str, line: int, words: str) -> None:
    err = error(f"id: p\nlists:\n  - {item}\n", csv_base)
    assert err.line == line
    assert words in err.message


# --- the example policies ----------------------------------------------------------------


def test_bundled_kr_policy_blocks_uriminzokkiri_with_the_warning_page() -> None:
    policy = load_policy(REPO_ROOT / "policies" / "kr-national-security.yaml")
    assert policy.info.id == "kr-national-security"
    [entry] = [e for e in policy.entries if e.name == "uriminzokkiri.com"]
    assert entry.scope is Scope.SUBTREE
    assert entry.action is Action.WARNING_PAGE
    assert entry.clients is None
    assert policy.clients is EVERYONE
    assert policy.warning_page is None


def test_a_list_that_is_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "a.txt").symlink_to(tmp_path / "b.txt")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    for name, words in (
        ("folder", "is a directory"),
        ("pipe.txt", "is a FIFO"),
        ("a.txt", "symbolic links form a loop"),
    ):
        err = error(f"id: p\nlists:\n  - file: {name}\n", tmp_path)
        assert (err.line, err.column) == (3, 11)
        assert words in err.message and name in err.message
