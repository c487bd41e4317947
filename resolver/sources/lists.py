"""Third-party block lists (plain domain lists, hosts files, adblock lists, CSV registers).

Read leniently: bad lines are counted and the first few reported with their line
numbers; they never fail the load (a file that cannot be read at all does). Public
suffixes (``com``, ``co.uk``, ``github.io``) are never taken from a list: they are
reported as bad lines.

Speed: a file is read in large blocks; one regular expression over the whole block
picks out the well-formed lines (the common case) at C speed, and only the other
lines take the slow path, one by one.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from resolver.core.errors import PolicyError, quote
from resolver.sources import files
from resolver.sources.files import DEFAULT_MAX_SIZE
from resolver.sources.names import normalise, public_suffixes

_LABEL = rb"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# Two labels at least; the last one not all digits (that would be an IP address).
_NAME = rb"(?:" + _LABEL + rb"\.)+(?![0-9]+(?![a-z0-9_-]))" + _LABEL
_PLAIN = re.compile(_NAME)
_TAIL = rb"\.?[ \t\r]*(?:#[^\n]*)?"
_SINKS = rb"(?:0\.0\.0\.0|127\.0\.0\.1|::1?|::0|0)"
_ADBLOCK_OK_OPTIONS = ("important", "all", "document", "doc")
_ADBLOCK_OPTS = rb"(?:important|all|document|doc)"

# One match per line: group 1 is the name when the line is a well-formed entry, else empty.
_FAST_DOMAINS = re.compile(rb"^(?:[ \t]*(?:\*\.)?(" + _NAME + rb")" + _TAIL + rb"|[^\n]*)$", re.M)
_FAST_HOSTS = re.compile(
    rb"^(?:[ \t]*" + _SINKS + rb"[ \t]+(?:\*\.)?(" + _NAME + rb")" + _TAIL + rb"|[^\n]*)$", re.M
)
_FAST_ADBLOCK = re.compile(
    rb"^(?:[ \t]*\|\|("
    + _NAME
    + rb")\^\|?(?:\$"
    + _ADBLOCK_OPTS
    + rb"(?:,"
    + _ADBLOCK_OPTS
    + rb")*)?[ \t\r]*|[^\n]*)$",
    re.M,
)

_HOSTS_SINKS = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "0", "::0"})
_HOSTS_SKIP = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "local",
        "broadcasthost",
        "ip6-localhost",
        "ip6-loopback",
        "ip6-localnet",
        "ip6-mcastprefix",
        "ip6-allnodes",
        "ip6-allrouters",
        "ip6-allhosts",
        "0.0.0.0",
    }
)
_HOSTS_SKIP_BYTES = frozenset(n.encode("ascii") for n in _HOSTS_SKIP)
_COSMETIC = ("##", "#@#", "#?#", "#$#", "#%#", "#@$#", "#@?#", "$$", "$@$")
_LEN = tuple(bytes((i,)) for i in range(256))
BLOCK_SIZE = 1 << 22
MAX_REPORTED = 5
MAX_NAME = 253


@dataclass
class ListReport:
    """What reading one list found: good names, and the bad lines (counted, a few kept)."""

    path: str
    names: int = 0
    bad: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)
    missing: bool = False  # a fetched list with no copy yet: read as empty

    def reject(self, line_no: int, message: str) -> None:
        self.bad += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append((line_no, message))


class ListSpec(Protocol):
    """What a reader needs to know about a list (resolver.policy_yaml.ListRef has it)."""

    @property
    def path(self) -> Path: ...
    @property
    def format(self) -> str: ...
    @property
    def csv_column(self) -> str | int | None: ...
    @property
    def delimiter(self) -> str: ...
    @property
    def encoding(self) -> str: ...
    @property
    def skip_rows(self) -> int: ...
    @property
    def url(self) -> str | None: ...


# --- reading ------------------------------------------------------------------------


def open_binary(path: Path, limit: int = DEFAULT_MAX_SIZE) -> IO[bytes]:
    """A list's bytes (``.gz``, ``.xz``, ``.bz2`` decompressed), at most ``limit`` of them.

    Only a regular file is opened; every problem, on opening or reading, is a PolicyError.
    """
    return files.open_binary(path, "list", limit, PolicyError, "max_file_size")


def _blocks(path: Path, limit: int = DEFAULT_MAX_SIZE) -> Iterator[bytes]:
    """The file in large blocks that end at a line end (the newline itself dropped)."""
    with open_binary(path, limit) as f:
        rest: list[bytes] = []  # a line longer than a block, in pieces
        first = True
        while True:
            data = f.read(BLOCK_SIZE)
            if first:
                first = False
                if data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8) :]
            if not data:
                break
            cut = data.rfind(b"\n")
            if cut < 0:
                rest.append(data)
                continue
            if rest:
                cut += sum(map(len, rest))
                data = b"".join([*rest, data])
            rest = [data[cut + 1 :]] if cut + 1 < len(data) else []
            yield data[:cut]
        if rest:
            yield b"".join(rest)


def _wire(name: bytes) -> bytes:
    return b"".join([_LEN[len(label)] + label for label in name.split(b".")]) + b"\x00"


@functools.cache
def _public_bytes() -> tuple[frozenset[bytes], frozenset[bytes], frozenset[bytes]]:
    psl = public_suffixes()
    return (
        frozenset(n.encode("ascii") for n in psl.listed if n.isascii()),
        frozenset(n.encode("ascii") for n in psl.wildcard if n.isascii()),
        frozenset(n.encode("ascii") for n in psl.exceptions if n.isascii()),
    )


def _public_message(name: str) -> str:
    return (
        f"{quote(name)} is a public suffix: blocking it would block every site under it "
        "(write the full names instead)"
    )


def _checked(raw: bytes, line_no: int, report: ListReport) -> bytes | None:
    """Wire form of one name from a list, or None (reported) when it is not a blockable name."""
    name = raw.lower().rstrip(b".")
    if name.startswith(b"*."):
        name = name[2:]
    if len(name) <= MAX_NAME and _PLAIN.fullmatch(name):
        text_name = name.decode("ascii")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            report.reject(line_no, "not UTF-8 text")
            return None
        return _checked_text(text, line_no, report)
    listed, wildcard, exceptions = _public_bytes()
    if name in listed or (name not in exceptions and name.partition(b".")[2] in wildcard):
        report.reject(line_no, _public_message(text_name))
        return None
    return _wire(name)


def _checked_text(text: str, line_no: int, report: ListReport) -> bytes | None:
    """The slow path: any name as text (Unicode, odd forms), checked by resolver.names."""
    text = text.strip()
    try:
        name = normalise(text[2:] if text.startswith("*.") else text)
    except ValueError as exc:
        report.reject(line_no, str(exc))
        return None
    if "." not in name:
        report.reject(line_no, f"{quote(name)} is a single label; list entries must be full names")
        return None
    if name in public_suffixes():
        report.reject(line_no, _public_message(name))
        return None
    return _wire(name.encode("ascii"))


SlowPath = Callable[[bytes, int, ListReport], Iterable[bytes]]


def _scan(
    path: Path,
    report: ListReport,
    fast: re.Pattern[bytes],
    slow: SlowPath,
    skip: frozenset[bytes] = frozenset(),
    limit: int = DEFAULT_MAX_SIZE,
) -> Iterator[bytes]:
    """Every name of a line-oriented list: ``fast`` finds the good lines, ``slow`` does the rest."""
    listed, wildcard, exceptions = _public_bytes()
    line_base = 0
    for block in _blocks(path, limit):
        low = block.lower()
        rows = fast.findall(low)
        lines: list[bytes] | None = None
        out: list[bytes] = []
        append = out.append
        for i, name in enumerate(rows):
            if name:
                if len(name) > MAX_NAME or name in skip:
                    pass  # the slow path reports or skips it
                elif name in listed or (
                    name not in exceptions and name.partition(b".")[2] in wildcard
                ):
                    report.reject(line_base + i + 1, _public_message(name.decode("ascii")))
                    continue
                else:
                    append(_wire(name))
                    continue
            if lines is None:
                lines = low.split(b"\n")
            line = lines[i]
            if not line or line.isspace():
                continue
            out.extend(slow(line, line_base + i + 1, report))
        line_base += len(rows)
        report.names += len(out)
        yield from out


# --- plain domain lists -----------------------------------------------------------------


def _domains_line(line: bytes, line_no: int, report: ListReport) -> Iterable[bytes]:
    entry = line.split(b"#", 1)[0].strip()
    if not entry or entry.startswith(b"!"):
        return ()
    name = _checked(entry, line_no, report)
    return () if name is None else (name,)


def read_domains(path: Path, report: ListReport, limit: int = DEFAULT_MAX_SIZE) -> Iterator[bytes]:
    """A plain list: one name per line (``*.name`` accepted as name); ``#`` and ``!`` comments."""
    return _scan(path, report, _FAST_DOMAINS, _domains_line, limit=limit)


# --- hosts files ------------------------------------------------------------------------


def _hosts_line(line: bytes, line_no: int, report: ListReport) -> Iterable[bytes]:
    fields = line.split(b"#", 1)[0].split()
    if not fields:
        return ()
    if len(fields) < 2:
        report.reject(line_no, "a hosts line needs an address and at least one name")
        return ()
    names = [raw for raw in fields[1:] if raw.decode("latin-1").lower() not in _HOSTS_SKIP]
    if not names:
        return ()  # the standard header: localhost, broadcasthost, ip6-allnodes ...
    address = fields[0].decode("latin-1")
    if address not in _HOSTS_SINKS:
        # A line mapping a name to a real address is not a block entry.
        report.reject(
            line_no,
            f"address {quote(address)} is not a sink address (0.0.0.0, 127.0.0.1, ::); "
            "a hosts line that maps a name to a real address is not a block",
        )
        return ()
    out = []
    for raw in names:
        name = _checked(raw, line_no, report)
        if name is not None:
            out.append(name)
    return out


def read_hosts(path: Path, report: ListReport, limit: int = DEFAULT_MAX_SIZE) -> Iterator[bytes]:
    """A hosts file: an address, then one or more names; the localhost lines are skipped."""
    return _scan(path, report, _FAST_HOSTS, _hosts_line, _HOSTS_SKIP_BYTES, limit)


# --- adblock lists ----------------------------------------------------------------------


def _adblock_line(line: bytes, line_no: int, report: ListReport) -> Iterable[bytes]:
    """An adblock rule other than a plain ``||name^``: a few are names, the rest are skipped."""
    try:
        rule = line.decode("utf-8").strip()
    except UnicodeDecodeError:
        report.reject(line_no, "not UTF-8 text")
        return ()
    if not rule or rule.startswith("!") or (rule.startswith("[") and rule.endswith("]")):
        return ()  # a comment, or a header such as [Adblock Plus 2.0]
    if rule.startswith("#") and not any(rule.startswith(c) for c in _COSMETIC):
        return ()  # a comment (AdGuard accepts # too)
    if rule.startswith("@@"):
        report.reject(
            line_no,
            f"{quote(rule)} is an exemption rule, not applied: "
            "list exemptions under allow: in the policy",
        )
        return ()
    if any(c in rule for c in _COSMETIC):
        report.reject(
            line_no, f"{quote(rule)} is a cosmetic rule (it hides parts of pages), not a name"
        )
        return ()
    if len(rule) > 1 and rule.startswith("/") and rule.endswith("/"):
        report.reject(
            line_no, f"{quote(rule)} is a regular expression; only ||name^ rules are read"
        )
        return ()
    if not rule.startswith("||"):
        report.reject(
            line_no,
            f"{quote(rule)} is not a ||name^ rule; only ||name^ rules are read "
            "(for a plain list of names use format: domains)",
        )
        return ()
    body, _, options = rule[2:].partition("$")
    if options:
        for option in options.split(","):
            key = option.split("=", 1)[0].strip().lstrip("~")
            if key not in _ADBLOCK_OK_OPTIONS:
                report.reject(
                    line_no,
                    f"{quote(rule)}: option ${key} limits the rule to some requests; "
                    "DNS blocks whole names, so the rule is skipped",
                )
                return ()
    name = body.rstrip("|")
    if name.endswith("^"):
        name = name[:-1]
    if any(c in name for c in "/^?:|") or ("*" in name and not name.startswith("*.")):
        report.reject(
            line_no,
            f"{quote(rule)} blocks some addresses (URLs) of a site; DNS can only block whole names",
        )
        return ()
    wire = _checked_text(name, line_no, report)
    return () if wire is None else (wire,)


def read_adblock(path: Path, report: ListReport, limit: int = DEFAULT_MAX_SIZE) -> Iterator[bytes]:
    """An adblock or AdGuard list: ``||name^`` blocks the name and every name under it.

    ``$important`` (and ``$all``, ``$document``) are accepted; rules with other options,
    exemptions (``@@``), regular expressions, cosmetic and URL rules are skipped and
    counted; ``!`` comments and ``[Adblock Plus 2.0]`` headers are skipped silently.
    """
    return _scan(path, report, _FAST_ADBLOCK, _adblock_line, limit=limit)


# --- CSV registers ----------------------------------------------------------------------


def _text_lines(path: Path, encoding: str, limit: int = DEFAULT_MAX_SIZE) -> Iterator[str]:
    """The file's lines in ``encoding`` (bytes it cannot decode replaced), BOM dropped."""
    with open_binary(path, limit) as raw:
        stream = io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        first = True
        for line in stream:
            if first:
                first = False
                line = line.removeprefix("\ufeff")
            yield line


def _rows(reader: Iterator[list[str]], report: ListReport, offset: int) -> Iterator[list[str]]:
    """The rows of a CSV reader; a row it cannot read (a cell over the csv module's
    field limit, say) is a bad line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line_no = offset + getattr(reader, "line_num", 0)
            report.reject(line_no, f"not a CSV row ({exc})")


def csv_header(
    path: Path,
    delimiter: str = ",",
    encoding: str = "utf-8",
    skip_rows: int = 0,
    limit: int = DEFAULT_MAX_SIZE,
) -> list[str]:
    """The first row after ``skip_rows`` lines (the column names), or [] for an empty file."""
    lines = _text_lines(path, encoding, limit)
    for _ in range(skip_rows):
        if next(lines, None) is None:
            return []
    try:
        row = next(csv.reader(lines, delimiter=delimiter), [])
    except csv.Error as exc:
        raise PolicyError(f"cannot read the header ({exc})", str(path), skip_rows + 1) from None
    return [cell.strip() for cell in row]


def find_column(header: list[str], column: str) -> int | None:
    """The index of a column by its name (case and surrounding spaces ignored)."""
    wanted = column.strip().lower()
    for i, cell in enumerate(header):
        if cell.lower() == wanted:
            return i
    return None


def read_csv(
    path: Path,
    report: ListReport,
    column: str | int | None = 0,
    delimiter: str = ",",
    encoding: str = "utf-8",
    skip_rows: int = 0,
    limit: int = DEFAULT_MAX_SIZE,
) -> Iterator[bytes]:
    """A register in CSV: the names are in one column (a header name or a 0-based index).

    A cell may hold several names separated by ``|`` (or ``,`` when the delimiter is
    not a comma); ``*.name`` is read as name; empty cells, IP addresses and URLs are
    counted as bad lines. ``skip_rows`` lines (such as a timestamp) come before the
    header or the first row.
    """
    lines = _text_lines(path, encoding, limit)
    for _ in range(skip_rows):
        if next(lines, None) is None:
            return
    reader = csv.reader(lines, delimiter=delimiter)
    rows = _rows(reader, report, skip_rows)
    index = 0 if column is None else column
    if isinstance(index, str):
        header = next(rows, None)
        if header is None:
            return
        found = find_column([c.strip() for c in header], index)
        if found is None:
            report.reject(
                skip_rows + 1,
                f"no column {quote(index)} in the header "
                f"({', '.join(h.strip()[:60] for h in header[:20])})",
            )
            return
        index = found
    separators = re.compile(r"[|,]" if delimiter != "," else r"[|]")
    label = quote(column) if isinstance(column, str) else f"{index}"
    out: list[bytes] = []
    for row in rows:
        line_no = skip_rows + reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # an empty line
        if index >= len(row):
            columns = f"{len(row)} column" + ("" if len(row) == 1 else "s")
            report.reject(line_no, f"the row has only {columns}; there is no column {label}")
            continue
        cell = row[index].strip()
        if not cell:
            report.reject(line_no, f"column {label} is empty: no name to block")
            continue
        for part in separators.split(cell):
            part = part.strip()
            if not part:
                continue
            if part.isascii():
                name = _checked(part.encode("ascii"), line_no, report)
            else:
                name = _checked_text(part, line_no, report)
            if name is not None:
                out.append(name)
        if len(out) >= 4096:
            report.names += len(out)
            yield from out
            out = []
    report.names += len(out)
    yield from out


# --- dispatch ---------------------------------------------------------------------------


class Reader(Protocol):
    def __call__(
        self, path: Path, report: ListReport, *, limit: int = DEFAULT_MAX_SIZE
    ) -> Iterator[bytes]: ...


READERS: dict[str, Reader] = {
    "domains": read_domains,
    "hosts": read_hosts,
    "adblock": read_adblock,
    "csv": read_csv,
}
FORMATS = tuple(READERS)


def read_list(ref: ListSpec, report: ListReport, limit: int = DEFAULT_MAX_SIZE) -> Iterator[bytes]:
    """Every name of the list a policy references, in wire form, with the list's options;
    at most ``limit`` bytes (``max_file_size``) are read from it. A list fetched from a
    url that has no copy yet is empty (``report.missing``)."""
    if ref.url is not None and not ref.path.exists():
        report.missing = True
        return iter(())
    if ref.format == "csv":
        return read_csv(
            ref.path, report, ref.csv_column, ref.delimiter, ref.encoding, ref.skip_rows, limit
        )
    return READERS[ref.format](ref.path, report, limit=limit)
