"""A block: list read line by line (resolver.sources.policy_plain) gives what the YAML
parser gives: the same entries, or the same error at the same line and column."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from resolver.core.errors import PolicyError
from resolver.sources import policy_yaml
from resolver.sources.policy_plain import cut

BASE = Path("/nonexistent")
ITEMS = [
    "a.example",
    "b.example",
    "A.Example",
    "WWW.b.example",
    "=a.example",
    "'=a.example'",
    '"*.a.example"',
    "'a.example'",
    '"c.example"',
    "*.a.example",
    "com",
    "co.uk",
    "github.io",
    "=co.uk",
    "'*.co.uk'",
    "1.5",
    "1_0.5_",
    "10.example",
    "1.2.3.4",
    "yes.no",
    "true",
    "null",
    "~",
    "",
    "example.com.",
    "ex_ample.com",
    "_dmarc.example.com",
    "a.example  # a comment",
    "münchen.example",
    "http://a.example/x",
    "a.example:",
    "{name: d.example}",
    "[e.example]",
    "x" * 64 + ".example",
    "-a.example",
    "a-.example",
    "0x1f.example",
    "2001-12-14.example",
    "a..b",
    "a.example:8080",
    "'unclosed",
    "a b.example",
]
HEADERS = [
    "id: p\n",
    "id: p\naction: nxdomain\n",
    "id: p\naction: redirect\nredirect: {cname: sink.example}\n",
    "id: p\naction: redirect\nredirect: {cname: a.example}\n",
    "id: p\nclients: [10.0.0.0/8]\n",
    "ttl: 30\n",
    "id: p\nttl: -1\n",
]
TAILS = ["", "allow: [b.example]\n", "allow:\n  - c.example\n", "# the end\n", "lists: 3\n"]


def outcome(parse: object) -> object:
    try:
        policy = parse()  # type: ignore[operator]
    except PolicyError as exc:
        return ("error", exc.message, exc.line, exc.column)
    return ("ok", policy.entries)


@st.composite
def documents(draw: st.DrawFn) -> str:
    indent = draw(st.sampled_from(["", "  ", "    "]))
    lines = []
    for item in draw(st.lists(st.sampled_from(ITEMS), max_size=8)):
        if draw(st.integers(0, 5)) == 0:
            lines.append(draw(st.sampled_from(["", "  # note", "#"])))
        lines.append(f"{indent}- {item}".rstrip() if item else f"{indent}- ")
    header = draw(st.sampled_from(HEADERS))
    tail = draw(st.sampled_from(TAILS))
    return header + "block:\n" + "".join(line + "\n" for line in lines) + tail


@given(documents())
def test_the_plain_reading_agrees_with_the_yaml_parser(text: str) -> None:
    full = outcome(lambda: policy_yaml._parse(text, "p.yaml", BASE, "", None))
    plain = cut(text)
    if plain is not None:
        try:
            fast = outcome(lambda: policy_yaml._parse(plain.rest, "p.yaml", BASE, "", plain))
        except policy_yaml._NotPlain:
            fast = None  # not plain after all: the YAML parser reads it
        if fast is not None:
            assert fast == full, text
    assert outcome(lambda: policy_yaml.parse_policy(text, "p.yaml", BASE)) == full, text


def test_a_plain_list_is_read_line_by_line() -> None:
    text = (
        "id: p\nblock:\n  - a.example\n  - '=b.example'  # exact\n\n"
        '  - "*.c.example"\nallow: [x.a.example]\n'
    )
    plain = cut(text)
    assert plain is not None and plain.line == 1
    assert plain.rest.count("\n") == text.count("\n")
    policy = policy_yaml._parse(plain.rest, "p.yaml", BASE, "", plain)
    assert [(e.name, e.scope.name, e.line, e.column) for e in policy.entries] == [
        ("a.example", "SUBTREE", 3, 5),
        ("b.example", "EXACT", 4, 5),
        ("c.example", "BELOW", 6, 5),
        ("x.a.example", "SUBTREE", 7, 9),
    ]


def test_a_policy_over_the_yaml_limit_must_be_plain(tmp_path: Path) -> None:
    names = "".join(f"  - n{i:07d}.plain.example\n" for i in range(700_000))
    path = tmp_path / "big.yaml"
    path.write_text("id: big\nblock:\n" + names)
    assert path.stat().st_size > 16 * 2**20
    policy = policy_yaml.load_policy(path)
    assert len(policy.entries) == 700_000
    assert policy.entries[-1].name == "n0699999.plain.example"
    assert policy.entries[-1].line == 700_002
    path.write_text("id: big\nblock:\n" + names.replace("n0500000", "co.uk # public", 1))
    try:
        policy_yaml.load_policy(path)
    except PolicyError as exc:
        assert (exc.line, exc.column) == (500_003, 5)
        assert "co.uk" in exc.message and "public suffix" in exc.message
    else:
        raise AssertionError("a public suffix was accepted")
    path.write_text("id: big\nblock:\n" + names + "  - {name: x.example}\n")
    try:
        policy_yaml.load_policy(path)
    except PolicyError as exc:
        assert "larger than 16 MiB, the limit for YAML" in exc.message
    else:
        raise AssertionError("a large policy that is not plain was read")


@given(documents(), st.integers(1, 40))
def test_reading_in_small_windows_changes_nothing(text: str, window: int) -> None:
    from resolver.sources import policy_plain

    whole = cut(text)
    saved = policy_plain.WINDOW
    policy_plain.WINDOW = window
    try:
        parts = cut(text)
    finally:
        policy_plain.WINDOW = saved
    assert (whole is None) == (parts is None)
    if whole is not None and parts is not None:
        assert (whole.rest, whole.line, whole.rows) == (parts.rest, parts.line, parts.rows)
