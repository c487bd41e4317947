"""YAML syntax errors point at the line to fix and say how, not where the parser gave up."""

from __future__ import annotations

import pytest

from resolver.core.errors import PolicyError
from resolver.sources.yamlsource import Doc


def syntax_error(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        Doc(text, "p.yaml", PolicyError)
    return info.value


def test_a_missing_colon_is_reported_on_its_own_line() -> None:
    err = syntax_error(
        "id: kr\nauthority Korea Communications Standards Commission\nreference: Order 1\n"
    )
    assert (err.line, err.column) == (2, 1)  # the parser notices on line 3
    assert "line 2 may be missing a ':' after the key" in err.message
    assert "'authority: Korea Communications Standards Commission'" in err.message


def test_a_missing_colon_on_the_last_line_is_not_reported_past_the_end() -> None:
    lines = [f"key{n}: value" for n in range(1, 17)] + ["authority Korea"]
    err = syntax_error("\n".join(lines) + "\n")
    assert (err.line, err.column) == (17, 1)
    assert "line 17 may be missing a ':'" in err.message


def test_a_key_alone_has_no_fix_to_suggest() -> None:
    err = syntax_error("id: p\nblock\n")
    assert err.line == 2
    assert "missing a ':'" in err.message and "write it as" not in err.message


def test_a_list_item_without_a_dash() -> None:
    err = syntax_error("id: p\nblock:\n  - a.example\n  b.example\n  - c.example\n")
    assert (err.line, err.column) == (4, 3)
    assert "start it with '- '" in err.message and "'- b.example'" in err.message


def test_a_key_inside_a_list() -> None:
    err = syntax_error("id: p\nblock:\n  - a.example\n  allow: b.example\n")
    assert err.line == 4
    assert "the list that begins on line 3" in err.message


def test_an_unclosed_bracket_names_its_line() -> None:
    err = syntax_error("id: p\nblock: [a.example, b.example\nallow: []\n")
    assert "the '[' on line 2 is not closed" in err.message


def test_a_colon_at_the_wrong_indentation() -> None:
    err = syntax_error("id: p\nblock: a.example\n  allow: b\n")
    assert err.line == 3
    assert "indentation" in err.message
