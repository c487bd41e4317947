"""Names as people write them: normalised when valid, rejected with a helpful message when not."""

from __future__ import annotations

import pytest
from publicsuffixlist import PublicSuffixList

from resolver.core import wire
from resolver.core.matcher import Scope
from resolver.sources.names import (
    is_public_suffix,
    normalise,
    parse_entry,
    public_suffixes,
)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  WWW.Example.com.  ", "www.example.com"),
        ("_dmarc.example.com", "_dmarc.example.com"),
        ("a-b.c-d.example", "a-b.c-d.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("localhost", "localhost"),
        ("1.example", "1.example"),
    ],
)
def test_normalise_valid(text: str, name: str) -> None:
    assert normalise(text) == name


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ],
)
def test_unicode_becomes_punycode(text: str, name: str) -> None:
    assert normalise(text) == name


def _message(text: str) -> str:
    with pytest.raises(ValueError) as info:
        normalise(text)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("https://example.com/news/1", "example.com"),
        ("http://www.example.com", "www.example.com"),
        ("example.com/path", "example.com"),
    ],
)
def test_url_or_path_is_rejected_with_the_name_to_write(text: str, host: str) -> None:
    message = _message(text)
    assert "DNS can only block whole names" in message
    assert repr(host) in message


@pytest.mark.parametrize(
    ("text", "host"), [("example.com:443", "example.com"), ("a.example:8080", "a.example")]
)
def test_port_is_rejected(text: str, host: str) -> None:
    message = _message(text)
    assert "port" in message
    assert repr(host) in message


@pytest.mark.parametrize("text", ["192.0.2.1", "2001:db8::1", "[2001:db8::1]", "::1"])
def test_ip_address_is_rejected(text: str) -> None:
    assert "IP address" in _message(text)


@pytest.mark.parametrize("text", ["example .com", "a.example b.example", "a.example\tb.example"])
def test_space_is_rejected(text: str) -> None:
    assert "space" in _message(text)


@pytest.mark.parametrize(
    "text",
    [
        "-bad.example",
        "bad-.example",
        "a..example",
        ".example.com",
        "ex!ample.com",
        "ex ample",
        "x" * 64 + ".example",
        "*.example.com",
        "xn--.example",
    ],
)
def test_bad_labels_are_rejected(text: str) -> None:
    _message(text)


def test_label_of_63_is_accepted() -> None:
    assert normalise("x" * 63 + ".example") == "x" * 63 + ".example"


def test_name_longer_than_253_is_rejected() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 62])  # 254 characters
    assert len(name) == 254
    assert "253" in _message(name)
    assert normalise(name[:-1]) == name[:-1]


@pytest.mark.parametrize("text", ["", "   ", "."])
def test_empty(text: str) -> None:
    _message(text)


@pytest.mark.parametrize(
    ("text", "name", "scope"),
    [
        ("example.com", "example.com", Scope.SUBTREE),
        ("Example.com.", "example.com", Scope.SUBTREE),
        ("=example.com", "example.com", Scope.EXACT),
        ("= Example.COM", "example.com", Scope.EXACT),
        ("*.example.com", "example.com", Scope.BELOW),
        ("*.Bücher.example", "xn--bcher-kva.example", Scope.BELOW),
        ("  =www.example.com  ", "www.example.com", Scope.EXACT),
    ],
)
def test_parse_entry(text: str, name: str, scope: Scope) -> None:
    assert parse_entry(text) == (name, scope)


@pytest.mark.parametrize("text", ["*example.com", "www.*.example.com", "ex*mple.com", "*"])
def test_wildcard_elsewhere_is_rejected(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_entry(text)
    assert "*.example.com" in str(info.value)


@pytest.mark.parametrize("text", ["=*.example.com", "*.*.example.com", "=", "*."])
def test_combined_or_empty_forms_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_entry(text)


@pytest.mark.parametrize("name", ["example.com", "a.b.c", "x" * 63 + ".example"])
def test_normalised_names_go_through_the_codec(name: str) -> None:
    assert wire.name_to_text(wire.text_to_name(normalise(name))) == name


@pytest.mark.parametrize("text", ["999.1.1.1", "1.2.3", "example.123", "10.0.0.256"])
def test_numeric_last_label_is_not_a_name(text: str) -> None:
    message = _message(text)
    assert "last label is a number" in message
    assert "such as example.com" in message


@pytest.mark.parametrize("text", ["0.0-02.net", "1.example", "123.456.example", "a.b1"])
def test_numbers_elsewhere_are_fine(text: str) -> None:
    assert normalise(text) == text


@pytest.mark.parametrize(
    ("text", "fix"),
    [
        ("", "write a domain name such as example.com"),
        ("https://example.com/x", "write 'example.com'"),
        ("example.com:443", "write 'example.com'"),
        ("192.0.2.1", "must be a domain name, such as example.com"),
        ("a b.example", "write one name per entry"),
        ("a..example", "use letters, digits and hyphens"),
        ("x" * 254, "check that it is one name"),
        ("a\u200d.example", "check the spelling, or write its xn-- form"),
    ],
)
def test_every_message_says_how_to_fix_it(text: str, fix: str) -> None:
    assert fix in _message(text)


# --- public suffixes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "com",
        "kr",
        "co.kr",
        "co.uk",
        "github.io",  # private section
        "blogspot.com",
        "xn--p1ai",  # .рф
        "anything.ck",  # *.ck
        "kawasaki.jp",  # the root of *.kawasaki.jp
        "unknowntld",  # an unknown top-level domain counts
    ],
)
def test_public_suffixes(name: str) -> None:
    assert is_public_suffix(name)
    assert name in public_suffixes()


@pytest.mark.parametrize(
    "name",
    ["example.com", "www.ck", "city.kawasaki.jp", "user.github.io", "example.co.kr", "a.b.ck"],
)
def test_not_public_suffixes(name: str) -> None:
    assert not is_public_suffix(name)


def test_public_suffixes_agree_with_the_package() -> None:
    """The sets built here give the same answers as publicsuffixlist's own algorithm."""
    reference = PublicSuffixList()
    psl = public_suffixes()
    names = set()
    for rule in psl.listed | psl.wildcard | psl.exceptions:
        names.update({rule, f"x.{rule}", f"www.{rule}", f"a.b.{rule}", rule.partition(".")[2]})
    names.discard("")
    assert len(names) > 40_000
    disagree = sorted(n for n in names if is_public_suffix(n) != reference.is_public(n))
    assert disagree == []


def test_public_suffix_list_is_read_once() -> None:
    assert public_suffixes() is public_suffixes()
