"""Policy files: good ones give entries with line numbers; each mistake is shown at file:line."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest

from resolver import wire
from resolver.errors import PolicyError
from resolver.policy import Action, Scope
from resolver.policy_yaml import Entry, ListRef, load_policy, parse_policy

SOURCE = "policies/test.yaml"

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


def parse(text: str, base_dir: Path = Path("/nonexistent")) -> object:
    return parse_policy(textwrap.dedent(text), SOURCE, base_dir)


def error(text: str, base_dir: Path = Path("/nonexistent")) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(textwrap.dedent(text), SOURCE, base_dir)
    err = info.value
    assert err.source == SOURCE
    assert str(err).startswith(f"{SOURCE}:{err.line}:")
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
        Entry("uriminzokkiri.com", Scope.SUBTREE, Action.WARNING_PAGE, line=13),
        Entry(
            "dprk-propaganda.example",
            Scope.SUBTREE,
            Action.WARNING_PAGE,
            reference="KCSC decision 2016-12",
            reason="propaganda",
            line=14,
        ),
        Entry("gone.example", Scope.SUBTREE, Action.NXDOMAIN, line=17),
        Entry("exact.example", Scope.EXACT, Action.WARNING_PAGE, line=19),
        Entry("below.example", Scope.BELOW, Action.WARNING_PAGE, line=20),
        Entry("xn--bcher-kva.example", Scope.SUBTREE, Action.WARNING_PAGE, line=21),
        Entry("safe.uriminzokkiri.com", Scope.SUBTREE, Action.ALLOW, line=23),
        Entry("ok.example", Scope.EXACT, Action.ALLOW, line=24),
    )
    assert policy.lists == (
        ListRef(base / "lists" / "a.txt", "domains", 26),
        ListRef(base / "lists" / "b.hosts", "hosts", 27),
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
        ("id: p\nblock:\n  - name: a.example\n    action: redirect\n", 4, "action must be one of"),
        ("id: p\nallow:\n  - name: a.example\n    action: nxdomain\n", 4, "cannot have an action"),
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
