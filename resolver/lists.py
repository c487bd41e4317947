"""Third-party block lists (plain domain lists, hosts files), read leniently.

Bad lines are counted and the first few reported with their line numbers; they
never fail the load. Well-formed lines take a fast path (one regex match).
"""

from __future__ import annotations

import lzma
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from resolver.names import normalise

_LABEL = rb"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_PLAIN = re.compile(rb"^(?:" + _LABEL + rb"\.)+" + _LABEL + rb"$")
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
MAX_REPORTED = 5


@dataclass
class ListReport:
    """What reading one list found: good names, and the bad lines (counted, a few kept)."""

    path: str
    names: int = 0
    bad: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, line_no: int, message: str) -> None:
        self.bad += 1
        if len(self.examples) < MAX_REPORTED:
            self.examples.append((line_no, message))


def _open_lines(path: Path) -> Iterator[bytes]:
    opener = lzma.open if path.suffix == ".xz" else open
    with opener(path, "rb") as f:
        yield from f


def _wire(name: bytes) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in name.split(b".")) + b"\x00"


def _checked(raw: bytes, line_no: int, report: ListReport) -> bytes | None:
    """Wire form of one name from a list, or None (reported) when it is not a name."""
    name = raw.lower().rstrip(b".")
    if name.startswith(b"*."):
        name = name[2:]
    if len(name) <= 253 and _PLAIN.match(name):
        return _wire(name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        report.reject(line_no, "not UTF-8 text")
        return None
    try:
        text = normalise(text[2:] if text.startswith("*.") else text)
    except ValueError as exc:
        report.reject(line_no, str(exc))
        return None
    if "." not in text:
        report.reject(line_no, f"{text!r} is a single label; list entries must be full names")
        return None
    return _wire(text.encode("ascii"))


def read_domains(path: Path, report: ListReport) -> Iterator[bytes]:
    """A plain list: one name per line (``*.name`` accepted as name); ``#`` and ``!`` comments."""
    for line_no, line in enumerate(_open_lines(path), 1):
        entry = line.split(b"#", 1)[0].strip()
        if not entry or entry.startswith(b"!"):
            continue
        name = _checked(entry, line_no, report)
        if name is not None:
            report.names += 1
            yield name


def read_hosts(path: Path, report: ListReport) -> Iterator[bytes]:
    """A hosts file: an address, then one or more names; the localhost lines are skipped."""
    for line_no, line in enumerate(_open_lines(path), 1):
        fields = line.split(b"#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            report.reject(line_no, "a hosts line needs an address and at least one name")
            continue
        names = [raw for raw in fields[1:] if raw.decode("latin-1").lower() not in _HOSTS_SKIP]
        if not names:
            continue  # the standard header: localhost, broadcasthost, ip6-allnodes ...
        if fields[0].decode("latin-1") not in _HOSTS_SINKS:
            # A line mapping a name to a real address is not a block entry.
            report.reject(line_no, f"address {fields[0].decode('latin-1')!r} is not a sink address")
            continue
        for raw in names:
            name = _checked(raw, line_no, report)
            if name is not None:
                report.names += 1
                yield name


READERS = {"domains": read_domains, "hosts": read_hosts}
