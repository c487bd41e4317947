"""The comparison of two sides' /entries lines (sinkhole diff) against the plain reading of
the lines: the new side's name count comes from the lines added and removed, the names
under changed names through the parents of the old side's names, the new lines may be
told apart from the old ones as they come (the reading child's _NewLines), in any
chunks; none of it changes what is found."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.tools.diff import compare_lines
from resolver.tools.diff_child import _NewLines
from resolver.tools.diff_lines import Lines, names_under

NAMES = st.lists(st.sampled_from(["a", "b", "www", "ex"]), min_size=1, max_size=3).map(
    lambda labels: ".".join([*labels, "example"])
)
LINES = st.builds(
    lambda name, form, action, policy: f"{name}\t{form}\t{action}\t{policy}".encode(),
    NAMES,
    st.sampled_from(["subtree", "exact", "below"]),
    st.sampled_from(["nxdomain", "allow", "drop", "warning-page"]),
    st.sampled_from(["p1", "p2"]),
)
ORDER = ({"p1": 0, "p2": 1}, {})
SWAPPED = ({"p1": 1, "p2": 0}, {})


def names(lines: list[bytes]) -> set[bytes]:
    return {line.partition(b"\t")[0] for line in lines}


def chunked(lines: list[bytes], size: int) -> list[bytes]:
    text = b"".join(line + b"\n" for line in lines)
    return [text[i : i + size] for i in range(0, len(text), size)]


@settings(max_examples=300)
@given(
    st.lists(LINES, max_size=25),
    st.lists(LINES, max_size=25),
    st.booleans(),
    st.integers(1, 50),
)
def test_how_the_lines_come_does_not_change_what_is_found(
    old: list[bytes], new: list[bytes], reordered: bool, size: int
) -> None:
    after_order = SWAPPED if reordered else ORDER
    plain = compare_lines(Lines(old), Lines(new), ORDER, after_order, reordered)
    assert (plain.names_before, plain.names_after) == (len(names(old)), len(names(new)))
    before = Lines(old)
    before.prepare()
    after = _NewLines(before)
    after.add_text(chunked(new, size))
    assert after.lines == new
    assert compare_lines(before, after, ORDER, after_order, reordered) == plain


@given(st.sets(NAMES, max_size=20), st.sets(NAMES, min_size=1, max_size=5))
def test_the_names_under_changed_names_through_their_parents(
    present: set[str], changed: set[str]
) -> None:
    lines = Lines([f"{name}\tsubtree\tnxdomain\tp1".encode() for name in sorted(present)])
    wanted = {name.encode() for name in changed}
    expected = names_under(lines.distinct, wanted)
    assert expected == {
        name for name in lines.distinct if any(name == c or name.endswith(b"." + c) for c in wanted)
    }
    lines.prepare()
    assert lines.under(wanted) == expected
