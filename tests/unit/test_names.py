"""Names as people write them: normalised when valid, rejected with a helpful message when not."""

from __future__ import annotations

import pytest

from resolver import wire
from resolver.names import normalise, parse_entry, to_wire
from resolver.policy import Scope


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
def test_to_wire_matches_the_codec(name: str) -> None:
    assert to_wire(name) == wire.text_to_name(name)
