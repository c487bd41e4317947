"""Type and rcode mnemonics: the same words dnspython uses, RFC 3597 forms for the rest."""

from __future__ import annotations

import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core.codes import RCODE_NAMES, TYPE_NAMES, rcode_name, type_code, type_name


@pytest.mark.parametrize("code", sorted(TYPE_NAMES))
def test_type_mnemonics_are_dnspythons(code: int) -> None:
    assert type_name(code) == dns.rdatatype.to_text(code)
    assert type_code(type_name(code)) == code


@pytest.mark.parametrize("code", sorted(RCODE_NAMES))
def test_rcode_mnemonics_are_dnspythons(code: int) -> None:
    assert rcode_name(code) == dns.rcode.to_text(code)


@given(st.integers(1, 65535))
def test_every_type_reads_back(code: int) -> None:
    text = type_name(code)
    assert type_code(text) == code
    assert type_code(text.lower()) == code
    assert type_code(str(code)) == code
    assert dns.rdatatype.from_text(text) == code  # dnspython reads our form too


def test_unknown_type_in_rfc3597_form() -> None:
    assert type_name(65280) == "TYPE65280"
    assert type_name(0) == "TYPE0"


def test_unknown_rcode() -> None:
    assert rcode_name(12) == "RCODE12"


@pytest.mark.parametrize(
    ("text", "code"), [("aaaa", 28), (" A ", 1), ("TYPE65", 65), ("type257", 257), ("257", 257)]
)
def test_type_code(text: str, code: int) -> None:
    assert type_code(text) == code


@pytest.mark.parametrize("text", ["NOPE", "", "0", "65536", "TYPE0", "TYPE", "TYPEx1", "٣"])
def test_type_code_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        type_code(text)
