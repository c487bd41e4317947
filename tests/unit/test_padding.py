"""EDNS padding of encrypted answers (RFC 7830, RFC 8467 block-length padding)."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core.padding import BLOCK, pad


def answer(records: int, edns: bool = True, pad_query: int = 0) -> bytes:
    q = dns.message.make_query("www.example.com", "A", use_edns=0 if edns else None, pad=pad_query)
    r = dns.message.make_response(q)
    if records:
        rrset = dns.rrset.from_text(
            "www.example.com.", 60, "IN", "A", *[f"192.0.2.{i}" for i in range(records)]
        )
        r.answer.append(rrset)
    r.pad = 0  # dnspython's own padding off: pad() is under test
    return r.to_wire(max_size=65535)


def padding(message: bytes) -> list[dns.edns.Option]:
    parsed = dns.message.from_wire(message)
    return [o for o in parsed.options if o.otype == dns.edns.OptionType.PADDING]


@given(st.integers(min_value=0, max_value=200))
def test_padded_to_a_multiple_of_the_block(records: int) -> None:
    plain = answer(records)
    padded = pad(plain)
    assert len(padded) % BLOCK == 0
    assert len(padded) - len(plain) < BLOCK + 4
    assert len(padding(padded)) == 1
    original, again = dns.message.from_wire(plain), dns.message.from_wire(padded)
    assert original.answer == again.answer and original.flags == again.flags


def test_without_edns_the_answer_is_left_as_it_is() -> None:
    plain = answer(2, edns=False)
    assert pad(plain) == plain


def test_padding_twice_changes_nothing() -> None:
    once = pad(answer(3))
    assert pad(once) == once


def test_a_message_that_would_grow_past_the_limit_is_left() -> None:
    plain = answer(3)
    assert pad(plain, limit=len(plain) + 10) == plain


@pytest.mark.parametrize("data", [b"", b"\x00" * 11, b"\x00" * 10 + b"\x00\x01", b"\xff" * 40])
def test_malformed_input_is_returned_unchanged(data: bytes) -> None:
    assert pad(data) == data


def test_the_other_options_are_kept() -> None:
    q = dns.message.make_query("a.example", "A", use_edns=0)
    r = dns.message.make_response(q)
    r.use_edns(0, options=[dns.edns.EDEOption(15, "Blocked by p")])
    padded = pad(r.to_wire())
    options = dns.message.from_wire(padded).options
    assert [o.otype for o in options] == [dns.edns.OptionType.EDE, dns.edns.OptionType.PADDING]
    assert len(padded) == BLOCK
