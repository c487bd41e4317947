"""What fuzzing the parsers found, each pinned with the answer it must give now."""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

import pytest

from resolver.core.errors import PolicyError, quote
from resolver.sources import policy_yaml, rpz, zonefile
from resolver.sources.yamlsource import Doc
from resolver.sources.zonefile import MAX_GENERATED, ZoneReader


def read_zone(text: str) -> ZoneReader:
    reader = ZoneReader("example.", ())
    reader.read_text(text, "fuzz.zone", Path("."), "example.", None, (), 0)
    return reader


def test_unicode_origin_goes_to_dnspython_not_a_crash() -> None:
    """$ORIGIN bücher.example. made the fast path encode a non-ASCII name (UnicodeEncodeError)."""
    reader = read_zone("$TTL 60\n$ORIGIN bücher.example.\nwww A 192.0.2.1\ngo CNAME .\n")
    assert set(reader.owners) == {b"\x03www\rxn--bcher-kva\x00", b"\x02go\rxn--bcher-kva\x00"}


def test_include_with_a_nul_in_the_name_is_a_policy_error() -> None:
    """A NUL in an $INCLUDE file name raised ValueError from os.path.realpath."""
    with pytest.raises(PolicyError) as info:
        read_zone("$TTL 60\nx CNAME .\n$INCLUDE a\x00b.zone\n")
    assert (info.value.line, "NUL" in info.value.message) == (3, True)


@pytest.mark.parametrize("stop", ["3000000000", "30000000000000000000000000"])
def test_a_huge_generate_is_refused_before_it_runs(stop: str) -> None:
    """$GENERATE 1-3000000000 ran (and allocated) until the process was killed."""
    started = time.monotonic()
    with pytest.raises(PolicyError) as info:
        rpz.parse_zone(f"$TTL 60\nx CNAME .\n$GENERATE 1-{stop} h$ CNAME .\n", "example.")
    assert time.monotonic() - started < 1.0
    assert info.value.line == 3
    assert f"{MAX_GENERATED:,}" in info.value.message


def test_generate_counts_add_up_over_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zonefile, "MAX_GENERATED", 100)
    half = 51
    text = f"$TTL 60\n$GENERATE 1-{half} a$ CNAME .\n$GENERATE 1-{half} b$ CNAME .\n"
    with pytest.raises(PolicyError) as info:
        read_zone(text)
    assert info.value.line == 3


def test_generate_below_the_limit_still_works() -> None:
    zone = rpz.parse_zone("$TTL 60\n$GENERATE 0-255/5 h$ CNAME .\n", "example.")
    assert zone.report.records == 52


def nested_aliases(levels: int) -> str:
    """YAML whose last anchor is a list of 10**levels items, in a few hundred bytes."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines.extend(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("bad_date", "message"),
    [(False, "keys in a policy file must be words"), (True, "cannot read this value")],
)
def test_an_alias_bomb_as_a_key_is_reported_quickly(bad_date: bool, message: str) -> None:
    """The error message quoted the key (or, with a bad date inside, its YAML nodes) with
    repr(): a billion items never finished."""
    text = nested_aliases(9) + "? *a8\n: 1\n"
    if bad_date:
        text = text.replace('"lol"]', "2024-02-30]", 1)
    started = time.monotonic()
    with pytest.raises(PolicyError, match=message):
        policy_yaml.parse_policy(text, "bomb.yaml", Path("."))
    assert time.monotonic() - started < 1.0


def test_quote_is_bounded_for_shared_nested_values() -> None:
    inner = ["x"] * 10
    for _ in range(9):
        inner = [inner] * 10
    started = time.monotonic()
    shown = quote(inner)
    assert time.monotonic() - started < 0.1
    assert len(shown) <= 203 and shown.startswith("[[[")
    assert quote([1, "a", {"k": (2, 3)}]) == repr([1, "a", {"k": (2, 3)}])


def test_a_parsed_file_is_not_kept_in_memory() -> None:
    """A constructor shared by all files remembered every node it built: each reload of a
    policy kept the whole previous file in memory."""
    doc = Doc("id: x\nblock: [a.example, b.example]\n", "x.yaml", PolicyError)
    assert doc.root is not None
    doc.value(doc.root)
    root = weakref.ref(doc.root)
    del doc
    gc.collect()
    assert root() is None
