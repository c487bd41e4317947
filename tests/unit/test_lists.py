"""Third-party block lists: read leniently, bad lines counted and a few reported by line number."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resolver.core import wire
from resolver.core.errors import PolicyError
from resolver.sources import lists
from resolver.sources.lists import (
    MAX_REPORTED,
    READERS,
    ListReport,
    read_adblock,
    read_csv,
    read_domains,
    read_hosts,
    read_list,
)
from resolver.sources.names import normalise
from resolver.sources.policy_lists import ListRef

Reader = Callable[[Path, ListReport], Iterator[bytes]]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def read(reader: Reader, path: Path) -> tuple[list[str], ListReport]:
    report = ListReport(str(path))
    names = [wire.name_to_text(n) for n in reader(path, report)]
    assert report.names == len(names)
    return names, report


def write(tmp_path: Path, text: str, name: str = "list.txt", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    if name.endswith(".xz"):
        with lzma.open(path, "wb") as f:
            f.write(text.encode(encoding))
    else:
        path.write_bytes(text.encode(encoding))
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
    assert {
        "domains": read_domains,
        "hosts": read_hosts,
        "adblock": read_adblock,
        "csv": read_csv,
    } == READERS


# --- real lists (present in the development tree, not in a user's clone) -----------------


def _real_lists() -> list[tuple[str, Path]]:
    found = []
    for fmt in ("domains", "hosts", "adblock"):
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


def test_real_hosts_compressed_and_plain_hold_the_same_names() -> None:
    plain = SHARED_DATA / "hosts" / "hagezi-legacy-light.hosts.xz"
    nine_per_line = SHARED_DATA / "hosts" / "hagezi-legacy-light-compressed.hosts.xz"
    if not (plain.is_file() and nine_per_line.is_file()):
        pytest.skip(f"the HaGeZi hosts lists are not under {SHARED_DATA}")
    a, report_a = read(read_hosts, plain)
    b, report_b = read(read_hosts, nine_per_line)
    assert sorted(a) == sorted(b)
    assert report_a.bad == report_b.bad


REGISTER = SHARED_DATA / "regulator" / "zapret-info-dump-20160613.csv.xz"


@pytest.mark.skipif(not REGISTER.is_file(), reason=f"no regulator register under {SHARED_DATA}")
def test_real_register_csv() -> None:
    """The Russian register of 2016: cp1251, ';', a timestamp line, domains in column 1."""
    ref = ListRef(REGISTER, "csv", 1, csv_column=1, delimiter=";", encoding="cp1251", skip_rows=1)
    report = ListReport(str(REGISTER))
    names = {wire.name_to_text(n) for n in read_list(ref, report)}
    assert report.names > 30_000
    assert len(names) > 18_000
    assert normalise("\u0430\u043b\u043a\u043e\u0433\u043e\u043b\u044c54.\u0440\u0444") in names
    assert "xn--54-6kcm8afcwb5l.xn--p1ai" in names  # written in Unicode in the file
    assert "avtomatyigrovye.su" in names  # written with a trailing dot
    # IP addresses in the domain column and rows without a domain: counted, not taken.
    assert 100 < report.bad < 200, report.examples
    assert not any(n.replace(".", "").isdigit() for n in names)


# --- more on plain lists ------------------------------------------------------------------


def test_domains_crlf_bom_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbfa.example\r\n\r\n# c\r\nb.example.\r\n  c.example  ")
    names, report = read(read_domains, path)
    assert names == ["a.example", "b.example", "c.example"]
    assert report.bad == 0


def test_domains_ip_addresses_are_bad_lines(tmp_path: Path) -> None:
    names, report = read(read_domains, write(tmp_path, "192.0.2.1\n999.1.1.1\nok.example\n"))
    assert names == ["ok.example"]
    assert [n for n, _ in report.examples] == [1, 2]
    assert "IP address" in report.examples[0][1]
    assert "last label is a number" in report.examples[1][1]


@pytest.mark.parametrize("suffix", ["co.uk", "github.io", "blogspot.com", "xyz.ck", "*.co.kr"])
def test_public_suffixes_are_bad_lines(tmp_path: Path, suffix: str) -> None:
    names, report = read(read_domains, write(tmp_path, f"ok.example\n{suffix}\nwww.ck\n"))
    assert names == ["ok.example", "www.ck"]
    assert report.bad == 1
    assert report.examples[0][0] == 2
    assert "is a public suffix" in report.examples[0][1]


def test_public_suffix_in_unicode_is_a_bad_line(tmp_path: Path) -> None:
    names, report = read(read_domains, write(tmp_path, "ås.no\nbücher.ås.no\n"))
    assert names == [normalise("bücher.ås.no")]
    assert report.examples == [(1, report.examples[0][1])]
    assert "'xn--s-1fa.no' is a public suffix" in report.examples[0][1]


def test_public_suffix_in_hosts_is_a_bad_line(tmp_path: Path) -> None:
    names, report = read(read_hosts, write(tmp_path, "0.0.0.0 github.io\n0.0.0.0 a.github.io\n"))
    assert names == ["a.github.io"]
    assert report.examples[0][0] == 1


def test_line_numbers_stay_right_across_read_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are read in blocks; a tiny block size puts many block edges mid-line."""
    monkeypatch.setattr(lists, "BLOCK_SIZE", 7)
    lines = [f"name{i}.example" if i % 5 else f"bad..{i}" for i in range(1, 60)]
    lines[10] = ""
    lines[20] = "# comment"
    names, report = read(read_domains, write(tmp_path, "\n".join(lines) + "\n", "l.txt.xz"))
    assert names == [line for line in lines if line.startswith("name")]
    assert [n for n, _ in report.examples] == [5, 10, 15, 20, 25]
    assert report.bad == 11


def test_unreadable_list_is_a_policy_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt.xz"
    broken.write_bytes(b"not xz at all")
    with pytest.raises(PolicyError) as info:
        list(read_domains(broken, ListReport(str(broken))))
    assert str(info.value).startswith(f"{broken}: cannot read the list")
    with pytest.raises(PolicyError):
        list(read_hosts(tmp_path / "absent", ListReport("absent")))


# --- adblock ------------------------------------------------------------------------------

ADBLOCK = """\
[Adblock Plus 2.0]
! Title: test list
! Syntax: AdBlock
||ads.example^
||Tracker.Example.COM^$important
||both.example^$important,all
||doc.example^$document
||end.example^|
||noanchor.example
||*.wild.example^
||bücher.example^
# a comment AdGuard allows
@@||allowed.example^
||third.example^$third-party
||dns.example^$dnstype=AAAA
##.banner
example.com##.ad
||site.example/ads/*
|https://url.example^
/ads[0-9]+/
plain.example
0.0.0.0 hosts.example
||com^
||bad..example^
"""


@pytest.mark.parametrize("file_name", ["list.adblock", "list.adblock.xz"])
def test_adblock(tmp_path: Path, file_name: str) -> None:
    names, report = read(read_adblock, write(tmp_path, ADBLOCK, file_name))
    assert names == [
        "ads.example",
        "tracker.example.com",
        "both.example",
        "doc.example",
        "end.example",
        "noanchor.example",
        "wild.example",
        "xn--bcher-kva.example",
    ]
    assert report.bad == 12


def test_adblock_skipped_rules_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lists, "MAX_REPORTED", 100)
    _, report = read(read_adblock, write(tmp_path, ADBLOCK))
    why = dict(report.examples)
    assert "exemption rule" in why[13] and "allow:" in why[13]
    assert "option $third-party" in why[14]
    assert "option $dnstype" in why[15]
    assert "cosmetic rule" in why[16]
    assert "cosmetic rule" in why[17]
    assert "URLs" in why[18]
    assert "not a ||name^ rule" in why[19]
    assert "regular expression" in why[20]
    assert "not a ||name^ rule" in why[21] and "format: domains" in why[21]
    assert "not a ||name^ rule" in why[22]
    assert "single label" in why[23]
    assert "not a valid domain name" in why[24]


def test_adblock_fast_and_slow_paths_agree(tmp_path: Path) -> None:
    """The same names, whether a line takes the one-regex path or the rule parser."""
    fast = "||a.example^\n||b.example^$important\n"
    slow = "||a.example^ \n||b.example^$important,~third-party\n"  # the second is skipped
    assert read(read_adblock, write(tmp_path, fast))[0] == ["a.example", "b.example"]
    names, report = read(read_adblock, write(tmp_path, slow, "slow.txt"))
    assert names == ["a.example"]
    assert report.bad == 1


# --- CSV registers ------------------------------------------------------------------------

REGISTER_TEXT = (
    "Updated: 2016-06-13 12:04:00 +0000\r\n"
    "104.16.173.117;;;суд;2-1687/2013;2013-05-23\r\n"
    "31.220.20.115;76автобар.рф;http://76автобар.рф/;суд;2-518/2016;2016-03-01\r\n"  # noqa: RUF001
    '160.153.62.102;forumkavkaz.com;"http://forumkavkaz.com/index.php?topic=1;wap2";суд;2;2014\r\n'
    "148.251.140.112 | 148.251.140.113;avtomatyigrovye.su.;;ФНС;2-1;2016\r\n"
    "109.200.0.101;109.200.0.101;;суд;1;2016\r\n"
    "1.2.3.4;*.wild.example;;суд;1;2016\r\n"
    "1.2.3.5;a.example|b.example, c.example;;суд;1;2016\r\n"
    "1.2.3.6;https://url.example/page;;суд;1;2016\r\n"
    "1.2.3.7;linecinema.org ;;суд;1;2016\r\n"
    "1.2.3.8\r\n"
    "\r\n"
)


def read_register(path: Path, **options: object) -> tuple[list[str], ListReport]:
    report = ListReport(str(path))
    settings: dict[str, object] = {
        "column": 1,
        "delimiter": ";",
        "encoding": "cp1251",
        "skip_rows": 1,
    }
    settings.update(options)
    names = [wire.name_to_text(n) for n in read_csv(path, report, **settings)]  # type: ignore[arg-type]
    assert report.names == len(names)
    return names, report


@pytest.mark.parametrize("file_name", ["dump.csv", "dump.csv.xz"])
def test_csv_register(tmp_path: Path, file_name: str) -> None:
    names, report = read_register(write(tmp_path, REGISTER_TEXT, file_name, "cp1251"))
    assert names == [
        "xn--76-8kcaef8fsao.xn--p1ai",
        "forumkavkaz.com",
        "avtomatyigrovye.su",
        "wild.example",
        "a.example",
        "b.example",
        "c.example",
        "linecinema.org",
    ]
    lines = dict(report.examples)
    assert report.bad == 4
    assert "column 1 is empty" in lines[2]
    assert "IP address" in lines[6]
    assert "DNS can only block whole names" in lines[9]
    assert "the row has only 1 column; there is no column 1" in lines[11]


def test_csv_header_column_by_name(tmp_path: Path) -> None:
    text = 'rank,Domain,note\n1,a.example,x\n2,b.example|c.example,y\n3,"d.example","q,w"\n'
    report = ListReport("x")
    names = [wire.name_to_text(n) for n in read_csv(write(tmp_path, text), report, " domain ")]
    assert names == ["a.example", "b.example", "c.example", "d.example"]
    assert report.bad == 0


def test_csv_comma_separates_names_only_when_it_is_not_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "a.example,b.example\n")
    report = ListReport("x")
    assert [wire.name_to_text(n) for n in read_csv(path, report, 1)] == ["b.example"]


def test_csv_missing_header_column_is_reported_once(tmp_path: Path) -> None:
    report = ListReport("x")
    path = write(tmp_path, "ip;url\n1;a.example\n")
    assert list(read_csv(path, report, "domain", ";")) == []
    assert report.bad == 1
    assert report.examples == [(1, "no column 'domain' in the header (ip, url)")]


def test_csv_utf8_bom_and_tab_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_bytes("\ufeffdomain\tnote\nпример.рф\tx\n".encode())  # noqa: RUF001
    report = ListReport("x")
    names = [wire.name_to_text(n) for n in read_csv(path, report, "domain", "\t")]
    assert names == ["xn--e1afmkfd.xn--p1ai"]


def test_csv_undecodable_bytes_are_bad_names_not_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"caf\xe9.example\nok.example\n")
    names, report = read(lambda p, r: read_csv(p, r, 0), path)
    assert names == ["ok.example"]
    assert report.bad == 1


# --- dispatch -----------------------------------------------------------------------------


def test_read_list_uses_the_csv_options(tmp_path: Path) -> None:
    path = write(tmp_path, REGISTER_TEXT, "dump.csv", "cp1251")
    ref = ListRef(path, "csv", 1, csv_column=1, delimiter=";", encoding="cp1251", skip_rows=1)
    report = ListReport(str(path))
    assert len(list(read_list(ref, report))) == 8


@pytest.mark.parametrize("fmt", ["domains", "hosts", "adblock"])
def test_read_list_other_formats(tmp_path: Path, fmt: str) -> None:
    line = {"domains": "a.example", "hosts": "0.0.0.0 a.example", "adblock": "||a.example^"}[fmt]
    ref = ListRef(write(tmp_path, line + "\n"), fmt, 1)
    assert list(read_list(ref, ListReport("x"))) == [b"\x01a\x07example\x00"]


# --- how list files are opened (resolver.sources.files) ----------------------------------


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz"])
def test_compressed_lists(tmp_path: Path, suffix: str) -> None:
    compress = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix]
    path = tmp_path / f"list.txt{suffix}"
    path.write_bytes(compress(b"ads.example\n0.0.0.0 not-a-domain-line\n"))
    names, report = read(read_domains, path)
    assert names == ["ads.example"] and report.bad == 1


def test_a_list_over_max_file_size(tmp_path: Path) -> None:
    path = write(tmp_path, "ads.example\n" * 1000)
    ref = ListRef(path, "domains", 3)
    with pytest.raises(PolicyError) as info:
        list(read_list(ref, ListReport(str(path)), limit=4096))
    assert info.value.source == str(path)
    assert "larger than 4 KiB" in info.value.message and "max_file_size" in info.value.message
    assert len(list(read_list(ref, ListReport(str(path)), limit=12_000))) == 1000


def test_a_fifo_list_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "feed.txt"
    os.mkfifo(fifo)
    with pytest.raises(PolicyError, match="FIFO"):
        list(read_domains(fifo, ListReport(str(fifo))))


def test_a_csv_cell_over_the_field_limit_is_a_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"domain\na.example\n{'x' * 200_000}\nb.example\n", "r.csv")
    report = ListReport(str(path))
    names = [wire.name_to_text(n) for n in read_csv(path, report, "domain")]
    assert names == ["a.example", "b.example"]
    assert report.bad == 1 and "not a CSV row" in report.examples[0][1]


def test_a_huge_line_gives_a_short_report(tmp_path: Path) -> None:
    huge = "||" + "a" * 5_000_000 + "/path^"
    names, report = read(read_adblock, write(tmp_path, f"||ok.example^\n{huge}\n", "a.txt"))
    assert names == ["ok.example"]
    [(line, message)] = report.examples
    assert line == 2 and len(message) < 400
