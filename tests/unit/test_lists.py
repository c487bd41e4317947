"""Third-party block lists: read leniently, bad lines counted and a few reported by line number."""

from __future__ import annotations

import lzma
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resolver import wire
from resolver.lists import MAX_REPORTED, READERS, ListReport, read_domains, read_hosts

Reader = Callable[[Path, ListReport], Iterator[bytes]]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def read(reader: Reader, path: Path) -> tuple[list[str], ListReport]:
    report = ListReport(str(path))
    names = [wire.name_to_text(n) for n in reader(path, report)]
    assert report.names == len(names)
    return names, report


def write(tmp_path: Path, text: str, name: str = "list.txt") -> Path:
    path = tmp_path / name
    if name.endswith(".xz"):
        with lzma.open(path, "wb") as f:
            f.write(text.encode("utf-8"))
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


# --- domains ------------------------------------------------------------------------

DOMAINS = """\
# A plain list
! adblock-style comment

ads.example
Tracker.Example.COM.
*.wild.example
metrics.example   # trailing comment
   padded.example
bücher.example
"""


@pytest.mark.parametrize("file_name", ["list.txt", "list.txt.xz"])
def test_domains(tmp_path: Path, file_name: str) -> None:
    names, report = read(read_domains, write(tmp_path, DOMAINS, file_name))
    assert names == [
        "ads.example",
        "tracker.example.com",
        "wild.example",
        "metrics.example",
        "padded.example",
        "xn--bcher-kva.example",
    ]
    assert report.bad == 0
    assert report.examples == []


def test_domains_wire_form(tmp_path: Path) -> None:
    report = ListReport("x")
    assert list(read_domains(write(tmp_path, "A.Example\n"), report)) == [b"\x01a\x07example\x00"]


def test_domains_bad_lines_are_counted_and_the_first_few_reported(tmp_path: Path) -> None:
    lines = ["good.example"]
    bad_line_numbers = []
    for i in range(8):
        lines.append(f"https://bad{i}.example/path" if i % 2 else f"bad{i}..example")
        bad_line_numbers.append(len(lines))
        lines.append(f"good{i}.example")
    lines.append("singlelabel")
    bad_line_numbers.append(len(lines))
    names, report = read(read_domains, write(tmp_path, "\n".join(lines) + "\n"))
    assert len(names) == 9
    assert report.bad == 9
    assert len(report.examples) == MAX_REPORTED
    assert [n for n, _ in report.examples] == bad_line_numbers[:MAX_REPORTED]
    assert "DNS can only block whole names" in report.examples[1][1]


def test_domains_single_label_is_a_bad_line(tmp_path: Path) -> None:
    names, report = read(read_domains, write(tmp_path, "localhost\ncom\nok.example\n"))
    assert names == ["ok.example"]
    assert report.bad == 2
    assert "single label" in report.examples[0][1]


def test_domains_not_utf8_is_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9.example\nok.example\n")
    names, report = read(read_domains, path)
    assert names == ["ok.example"]
    assert report.examples == [(1, "not UTF-8 text")]


def test_domains_name_longer_than_255_octets_is_a_bad_line(tmp_path: Path) -> None:
    long_name = ".".join(["a"] * 200) + ".example"  # labels are short, the name is not
    names, report = read(read_domains, write(tmp_path, f"{long_name}\nok.example\n"))
    assert names == ["ok.example"]
    assert report.bad == 1
    assert report.examples[0][0] == 1


def test_empty_list(tmp_path: Path) -> None:
    names, report = read(read_domains, write(tmp_path, ""))
    assert names == []
    assert report.bad == 0


# --- hosts --------------------------------------------------------------------------

HOSTS = """\
# hosts-style block list
127.0.0.1 localhost
127.0.0.1 localhost.localdomain
0.0.0.0 0.0.0.0

0.0.0.0 ads.example
127.0.0.1 Tracker.Example.COM. # comment
0.0.0.0   one.example two.example\tthree.example
:: six.example
0.0.0.0 localhost seven.example
"""


@pytest.mark.parametrize("file_name", ["hosts", "hosts.xz"])
def test_hosts(tmp_path: Path, file_name: str) -> None:
    names, report = read(read_hosts, write(tmp_path, HOSTS, file_name))
    assert names == [
        "ads.example",
        "tracker.example.com",
        "one.example",
        "two.example",
        "three.example",
        "six.example",
        "seven.example",
    ]
    assert report.bad == 0


def test_hosts_bad_lines(tmp_path: Path) -> None:
    text = (
        "0.0.0.0 ok.example\n"
        "0.0.0.0\n"  # no name
        "192.0.2.1 real.example\n"  # a real mapping, not a block
        "0.0.0.0 bad..example good.example\n"  # one bad name, one good
        "0.0.0.0 https://x.example/\n"
    )
    names, report = read(read_hosts, write(tmp_path, text))
    assert names == ["ok.example", "good.example"]
    assert report.bad == 4
    assert [n for n, _ in report.examples] == [2, 3, 4, 5]
    assert "sink address" in report.examples[1][1]


def test_standard_hosts_header_is_not_reported(tmp_path: Path) -> None:
    """The lines every hosts file starts with map local names; they are skipped, not bad."""
    header = (
        "127.0.0.1 localhost\n"
        "127.0.0.1 localhost.localdomain\n"
        "127.0.0.1 local\n"
        "255.255.255.255 broadcasthost\n"
        "::1 localhost ip6-localhost ip6-loopback\n"
        "fe80::1%lo0 localhost\n"
        "fe00::0 ip6-localnet\n"
        "ff00::0 ip6-mcastprefix\n"
        "ff02::1 ip6-allnodes\n"
        "ff02::2 ip6-allrouters\n"
        "ff02::3 ip6-allhosts\n"
        "0.0.0.0 0.0.0.0\n"
        "0.0.0.0 ads.example\n"
    )
    names, report = read(read_hosts, write(tmp_path, header))
    assert names == ["ads.example"]
    assert report.bad == 0, report.examples


def test_readers_table() -> None:
    assert {"domains": read_domains, "hosts": read_hosts} == READERS


# --- real lists (present in the development tree, not in a user's clone) -----------------


def _real_lists() -> list[tuple[str, Path]]:
    found = []
    for fmt in ("domains", "hosts"):
        folder = SHARED_DATA / fmt
        if folder.is_dir():
            found += [(fmt, path) for path in sorted(folder.iterdir()) if path.is_file()]
    return found


REAL_LISTS = _real_lists()


@pytest.mark.skipif(not REAL_LISTS, reason=f"no real block lists under {SHARED_DATA}")
@pytest.mark.parametrize(("fmt", "path"), REAL_LISTS, ids=[p.name for _, p in REAL_LISTS] or None)
def test_real_list(fmt: str, path: Path) -> None:
    report = ListReport(str(path))
    count = 0
    for name in READERS[fmt](path, report):
        count += 1
        assert name[-1] == 0
    assert count == report.names
    assert count > 1000
    assert report.bad < 0.01 * (count + report.bad), report.examples
