"""The fuzz targets and their contract.

Every parser that reads outside input gets one target: a function of bytes. The
contract: the parser accepts the input or raises one of our own errors (a
``ResolverError`` subclass: FormError, NotImplementedQuery, PolicyError ...), never
anything else, and returns within a bounded time. ``check`` applies the contract to one
input; a breach raises ``Violation``. Some targets check a little more on the way (a
parsed query is answered in a form our own reply parser reads back; the TCP framer
loses no octet).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from resolver.core import outbound, wire
from resolver.core.errors import FormError, ResolverError
from resolver.core.tcpframe import Framer, frame
from resolver.sources import lists, policy_yaml, rpz
from resolver.sources.zonefile import ZoneReader

CORPUS = Path(__file__).resolve().parent / "corpus"
TIME_LIMIT = 5.0  # seconds one input may take (inputs are at most 64 KiB)
ZONE = "example."


class Violation(AssertionError):
    """An input broke the contract: an exception not of our own, a wrong result, or slowness."""

    def __init__(self, target: str, data: bytes, reason: str) -> None:
        shown = data[:80]
        more = f"... ({len(data)} bytes)" if len(data) > 80 else ""
        super().__init__(f"{target}: {reason}\ninput: {shown!r}{more}")
        self.target = target
        self.data = data
        self.reason = reason


@functools.cache
def workdir() -> Path:
    """A private directory for the targets that read files; removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="sinkhole-fuzz-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# --- the targets -------------------------------------------------------------------------


def query(data: bytes) -> None:
    """wire.parse_query; an accepted query's answer must read back with outbound.parse_reply."""
    try:
        parsed = wire.parse_query(data)
    except ResolverError as exc:
        # The answer to a rejected packet must be a header (or nothing below 12 octets).
        answer = wire.build_error_reply(data, getattr(exc, "rcode", wire.FORMERR))
        if (answer is None) != (len(data) < 12):
            raise AssertionError("an error answer exactly when there is a header") from None
        raise
    answer = wire.build_reply(parsed, wire.NOERROR)
    reply = outbound.parse_reply(answer, int.from_bytes(parsed.qid, "big"), parsed.question)
    if reply.rcode != wire.NOERROR or reply.body != parsed.question:
        raise AssertionError("our own answer did not read back")


def reply(data: bytes) -> None:
    """outbound.parse_reply, for the ID and the question the packet itself carries."""
    qid = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
    question = b"\x07example\x00\x00\x01\x00\x01"
    try:
        end = wire.skip_name(data, 12) + 4
        if end <= len(data):
            question = data[12:end]
    except FormError:
        pass
    outbound.parse_reply(data, qid, question)


def tcp(data: bytes) -> None:
    """tcpframe.Framer fed the input in pieces (sizes from the input): no octet is lost."""
    framer = Framer()
    messages: list[bytes] = []
    pos = 0
    step = 1
    while pos < len(data):
        step = (step * 7 + data[pos]) % 97 + 1
        messages += framer.feed(data[pos : pos + step])
        pos += step
    framed = b"".join(frame(m) for m in messages)
    if framed + data[len(framed) :] != data or framer.pending != len(data) - len(framed):
        raise AssertionError("the framer lost or changed octets")


def policy(data: bytes) -> None:
    """policy_yaml.parse_policy (lists resolve against an empty private directory)."""
    policy_yaml.parse_policy(_text(data), "fuzz.yaml", workdir())


def _list_file(data: bytes) -> Path:
    path = workdir() / "list.txt"
    path.write_bytes(data)
    return path


def _read_list(reader: lists.Reader) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        report = lists.ListReport("fuzz")
        names = list(reader(_list_file(data), report, limit=1 << 20))
        if len(names) != report.names:
            raise AssertionError(f"{len(names)} names read, the report counts {report.names}")

    target.__doc__ = f"lists.{reader.__name__}"  # type: ignore[attr-defined]
    return target


def csv(data: bytes) -> None:
    """lists.read_csv: the first line picks the column and delimiter (``column;delimiter``)."""
    head, _, body = data.partition(b"\n")
    column_text, _, delimiter_text = _text(head).partition(";")
    column: str | int = int(column_text) if column_text.isdigit() else column_text
    delimiter = delimiter_text[:1] or ","
    if delimiter in '\r\n"':  # the csv module refuses these; the config checks it first
        delimiter = ","
    report = lists.ListReport("fuzz")
    names = list(lists.read_csv(_list_file(body), report, column, delimiter, limit=1 << 20))
    if len(names) != report.names:
        raise AssertionError(f"{len(names)} names read, the report counts {report.names}")


def zone(data: bytes) -> None:
    """zonefile.ZoneReader on a zone file's text; $INCLUDE only inside a private directory."""
    base = workdir()
    reader = ZoneReader(ZONE, (base,))
    reader.read_text(_text(data), str(base / "fuzz.zone"), base, ZONE, None, (), 0)


def rpz_zone(data: bytes) -> None:
    """rpz.parse_zone: the zone file read and compiled into a policy layer."""
    rpz.parse_zone(_text(data), ZONE, "fuzz.zone", include_dirs=(workdir(),))


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    tokens: tuple[bytes, ...] = ()  # words the mutator splices in

    @property
    def corpus(self) -> Path:
        return CORPUS / self.name


_NAME_TOKENS = (b"example.com", b"*.", b"xn--", b"\\.", b"\\000", b"..", b"com", b"localhost")
_ZONE_TOKENS = (
    b"$INCLUDE ",
    b"$ORIGIN ",
    b"$TTL ",
    b"$GENERATE 1-3 ",
    b"@",
    b"(",
    b")",
    b";",
    b'"',
    b"\\",
    b" IN ",
    b" CNAME ",
    b" A ",
    b" AAAA ",
    b" SOA ",
    b" TXT ",
    b"rpz-passthru.",
    b"*.",
    b"\n ",
    b"4294967296",
    *_NAME_TOKENS,
)
_YAML_TOKENS = (
    b"id: ",
    b"block:\n",
    b"allow:\n",
    b"  - ",
    b"name: ",
    b"action: ",
    b"lists:\n",
    b"file: ",
    b"format: ",
    b"clients: ",
    b"effective_from: ",
    b"2024-02-30",
    b"&a ",
    b"*a",
    b"? ",
    b"!!binary ",
    b"!!python/object ",
    b"{",
    b"[",
    b"'",
    b'"',
    b"\t",
    *_NAME_TOKENS,
)
_LIST_TOKENS = (
    b"0.0.0.0 ",
    b"127.0.0.1 ",
    b"::1 ",
    b"||",
    b"^",
    b"$important",
    b"@@",
    b"##",
    b"#",
    b"!",
    b"\r\n",
    b"\xef\xbb\xbf",
    b",",
    b"|",
    b'"',
    *_NAME_TOKENS,
)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("query", query),
        Target("reply", reply),
        Target("tcp", tcp),
        Target("policy", policy, _YAML_TOKENS),
        Target("domains", _read_list(lists.read_domains), _LIST_TOKENS),
        Target("hosts", _read_list(lists.read_hosts), _LIST_TOKENS),
        Target("adblock", _read_list(lists.read_adblock), _LIST_TOKENS),
        Target("csv", csv, _LIST_TOKENS),
        Target("zone", zone, _ZONE_TOKENS),
        Target("rpz", rpz_zone, _ZONE_TOKENS),
    )
}


def check(target: Target, data: bytes, limit: float = TIME_LIMIT) -> bool:
    """Apply the contract to one input: True if accepted, False if rejected with our own
    error. Raises Violation for anything else, or when it took longer than ``limit``."""
    started = time.perf_counter()
    try:
        target.run(data)
        accepted = True
    except ResolverError:
        accepted = False
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise Violation(target.name, data, reason) from exc
    elapsed = time.perf_counter() - started
    if elapsed > limit:
        raise Violation(target.name, data, f"took {elapsed:.2f} s (limit {limit} s)")
    return accepted


def corpus(target: Target) -> list[bytes]:
    """The seed inputs committed for ``target``, in file name order."""
    folder = target.corpus
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
