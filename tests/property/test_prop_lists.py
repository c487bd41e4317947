"""The list readers' one-regex fast path agrees with a slow, line-by-line reading.

The readers run one regular expression over a whole block of the file and send
only the lines it does not take to the per-line parser; these properties check
that this never changes which names come out or which line a problem is on,
however lines and block edges fall.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core import wire
from resolver.sources import lists
from resolver.sources.lists import ListReport, read_adblock, read_domains, read_hosts
from resolver.sources.names import is_public_suffix, normalise

NAMES = st.sampled_from(
    [
        "a.example",
        "Ads.Example.COM",
        "x-y.example",
        "_dmarc.example",
        "0.0-02.net",
        "bücher.example",
        "www.ck",
        "co.uk",
        "github.io",
        "example",
        "a..example",
        "-bad.example",
        "192.0.2.1",
        "1.2.3",
        "https://u.example/p",
        "x" * 64 + ".example",
        ".".join(["a"] * 127) + ".example",
    ]
)
DECORATION = st.sampled_from(["{}", "{}.", "*.{}", "  {}  ", "{} # note", "{}\r", "\t{}"])
OTHER = st.sampled_from(["", "   ", "# comment", "! comment", "\r", "a.example b.example"])


@st.composite
def domain_lines(draw: st.DrawFn) -> list[str]:
    out = []
    for _ in range(draw(st.integers(0, 25))):
        if draw(st.integers(0, 4)) == 0:
            out.append(draw(OTHER))
        else:
            out.append(draw(DECORATION).format(draw(NAMES)))
    return out


def reference_domains(lines: list[str]) -> tuple[list[bytes], list[int]]:
    """The obvious reading: each line on its own, through resolver.names."""
    names, bad = [], []
    for number, line in enumerate(lines, 1):
        entry = line.split("#", 1)[0].strip()
        if not entry or entry.startswith("!"):
            continue
        if entry.startswith("*."):
            entry = entry[2:]
        try:
            name = normalise(entry)
        except ValueError:
            bad.append(number)
            continue
        if "." not in name or is_public_suffix(name):
            bad.append(number)
            continue
        names.append(wire.text_to_name(name))
    return names, bad


def run(reader: lists.Reader, text: str, block_size: int) -> tuple[list[bytes], list[int]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "list.txt"
        path.write_bytes(text.encode("utf-8"))
        report = ListReport(str(path))
        original = lists.BLOCK_SIZE
        lists.BLOCK_SIZE = block_size
        try:
            names = list(reader(path, report))
        finally:
            lists.BLOCK_SIZE = original
    assert report.names == len(names)
    return names, [number for number, _ in report.examples] + [-1] * (
        report.bad - len(report.examples)
    )


BLOCK_SIZES = st.sampled_from([1, 5, 64, 1 << 22])


@given(domain_lines(), st.booleans(), BLOCK_SIZES)
def test_domains_fast_path_agrees(lines: list[str], final_newline: bool, block: int) -> None:
    text = "\n".join(lines) + ("\n" if final_newline and lines else "")
    names, bad = run(read_domains, text, block)
    expected_names, expected_bad = reference_domains(lines)
    assert names == expected_names
    assert len(bad) == len(expected_bad)
    assert bad[: lists.MAX_REPORTED] == expected_bad[: lists.MAX_REPORTED]


@given(domain_lines(), BLOCK_SIZES)
def test_hosts_fast_path_agrees(lines: list[str], block: int) -> None:
    """A hosts file with one name per line reads like the plain list of those names."""
    lines = [line for line in lines if " b." not in line and not line.strip().startswith("!")]
    hosts = [
        f"0.0.0.0 {line}" if line.strip() and not line.strip().startswith("#") else line
        for line in lines
    ]
    names, bad = run(read_hosts, "\n".join(hosts), block)
    expected, expected_bad = reference_domains(lines)
    assert names == expected
    assert bad[: lists.MAX_REPORTED] == expected_bad[: lists.MAX_REPORTED]


@given(st.lists(NAMES, max_size=20), BLOCK_SIZES)
def test_adblock_fast_path_agrees(plain: list[str], block: int) -> None:
    rules = [f"||{name}^" for name in plain]
    names, _ = run(read_adblock, "\n".join(rules) + "\n", block)
    expected, _ = reference_domains([n for n in plain if "/" not in n])
    assert names == expected


@pytest.mark.parametrize("line", ["||a.example^", "||a.example^$important", "a.example"])
def test_adblock_one_line_without_newline(line: str) -> None:
    names, _ = run(read_adblock, line, 1 << 22)
    assert names == ([] if line == "a.example" else [wire.text_to_name("a.example")])
