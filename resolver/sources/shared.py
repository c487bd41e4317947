"""A built policy as one flat image: the name table, the entries, and a small side table.

A reload builds the policy once (``pack`` of a BuildResult), writes the image to a file
(``write_image``), and every serving process maps that file (``read_image``): the names,
the bulk of the memory, exist once on the machine whatever the number of processes.
What each process keeps for itself is the side table: the verdicts (a few per policy),
the policies' settings and reports, and the RPZ zones.

In the BuildResult a process gets back, the policy files' table is a PackedPolicy over
the mapped names, each report's ``listed`` is a read-only view of the names of that
policy's lists (ListedView: length and iteration, as the control endpoint needs), and a
policy with many entries has them as an EntryView over the image (name, form, action:
what /entries and the name counts of a reload need).

The side table is a pickle: it is written and read only by the server's own processes,
in a directory only they can write (mode 0700).
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast, overload

from resolver.core.layers import LayeredPolicy
from resolver.core.matcher import CompiledPolicy, Outcomes, PackedPolicy, Scope
from resolver.core.nametable import NameTable, TableError
from resolver.core.verdict import Action
from resolver.sources.policy_entries import Entry
from resolver.sources.policy_plain import PlainEntries
from resolver.sources.snapshot import BuildResult, PolicyReport

SMALL = 2000  # a policy with more entries than this keeps them in the image
_TABLE = "names"
_NAMES = re.compile(rb"[^\x00]*\x00")


CHUNK = 1 << 20  # bytes of names split at once when a view is read


def _chunks(
    table: NameTable, start: int, end: int, end_of_item: bytes, damaged: str
) -> Iterator[bytes]:
    """The bytes of the image's extra from ``start`` to ``end``, about CHUNK at a time, each
    cut after the last ``end_of_item`` it holds (so no item is split between two)."""
    extra = table.extra
    position = start
    while position < end:
        chunk = bytes(extra[position : min(position + CHUNK, end)])
        cut = chunk.rfind(end_of_item) + 1
        if cut == 0:
            raise TableError(damaged)
        position += cut
        yield chunk[:cut]


@dataclass(frozen=True)
class ListedView:
    """The names of one policy's lists (wire form), kept in the image one after another."""

    table: NameTable
    start: int
    end: int
    count: int

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[bytes]:
        # Every name ends at its one zero byte (the root label), so a run of names splits
        # at them.
        for chunk in _chunks(self.table, self.start, self.end, b"\x00", "a damaged list of names"):
            yield from _NAMES.findall(chunk)

    def __contains__(self, name: object) -> bool:
        return any(name == listed for listed in self)


class EntryView(Sequence[Entry]):
    """A policy's entries kept in the image, one line each: name, form, action."""

    def __init__(self, table: NameTable, start: int, end: int, count: int) -> None:
        self.table = table
        self.start = start
        self.end = end
        self.count_ = count

    def __len__(self) -> int:
        return self.count_

    def blocks(self) -> Iterator[tuple[str, int]]:
        """The lines as kept (name, form and action as numbers), a block of whole lines at
        a time, each with the number of lines it holds."""
        for chunk in _chunks(self.table, self.start, self.end, b"\n", "a damaged list of entries"):
            text = chunk.decode()
            yield text, text.count("\n")

    def __iter__(self) -> Iterator[Entry]:
        for text, _ in self.blocks():
            for line in text.splitlines():
                name, scope, action = line.split("\t")
                yield Entry(name, Scope(int(scope)), Action(int(action)))

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Entry]: ...
    def __getitem__(self, index: int | slice) -> Entry | Sequence[Entry]:
        return list(self)[index]


Span = tuple[int, int, int]  # start and end in the image's extra bytes, and a count


def pack(result: BuildResult) -> tuple[bytearray, BuildResult]:
    """The image of ``result`` and the result as it reads from it (see the module doc)."""
    policy = result.snapshot.policy
    compiled = policy
    if isinstance(policy, LayeredPolicy):
        first = policy.layers[0] if policy.layers else None
        compiled = first.qname if first is not None and not first.source else CompiledPolicy()
    extra = bytearray()

    def keep(found: set[bytes]) -> Span | None:
        start = len(extra)
        extra.extend(b"".join(found))
        # A name with a zero byte inside could not be split off again: keep the set then.
        if extra.count(b"\x00", start) != len(found):
            del extra[start:]
            return None
        return start, len(extra), len(found)

    listed = [(keep(r.listed), keep(r.named)) for r in result.reports]
    entries: list[Span | None] = []
    for file in result.policies:
        if len(file.entries) <= SMALL:
            entries.append(None)
            continue
        start = len(extra)
        extra += _entry_lines(file.entries).encode()
        entries.append((start, len(extra), len(file.entries)))
    numbered = Outcomes()
    image = numbered.pack(compiled.table, bytes(extra))
    extra.clear()
    names = NameTable(image)
    packed = PackedPolicy.of(compiled, names, numbered)
    return image, _light(result, packed, names, listed, entries)


def _entry_lines(entries: Sequence[Entry]) -> str:
    def line(e: Entry) -> str:
        return f"{e.name}\t{int(e.scope)}\t{int(e.action)}\n"

    if isinstance(entries, PlainEntries):  # names alone: entries of the common form
        tail = f"\t{int(Scope.SUBTREE)}\t{int(entries.action)}\n"
        return "".join(i + tail if isinstance(i, str) else line(i) for i in entries.items)
    return "".join(map(line, entries))


def _light(
    result: BuildResult,
    packed: PackedPolicy,
    names: NameTable,
    listed: list[tuple[Span | None, Span | None]],
    entries: list[Span | None],
) -> BuildResult:
    policy: CompiledPolicy = packed
    old = result.snapshot.policy
    if isinstance(old, LayeredPolicy):
        layers = list(old.layers)
        if layers and not layers[0].source:
            layers[0] = replace(layers[0], qname=packed)
        policy = LayeredPolicy(layers)

    def view(found: set[bytes], span: Span | None) -> set[bytes]:
        return found if span is None else cast(set[bytes], ListedView(names, *span))

    reports = [
        replace(report, listed=view(report.listed, a), named=view(report.named, b))
        for report, (a, b) in zip(result.reports, listed, strict=True)
    ]
    policies = tuple(
        file if span is None else replace(file, entries=cast(Any, EntryView(names, *span)))
        for file, span in zip(result.policies, entries, strict=True)
    )
    snapshot = replace(result.snapshot, policy=policy)
    return BuildResult(snapshot, reports, policies, result.zones)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> str | None:
        return _TABLE if isinstance(obj, NameTable) else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: io.BytesIO, table: NameTable) -> None:
        super().__init__(data)
        self.table = table

    def persistent_load(self, pid: Any) -> Any:
        if pid != _TABLE:
            raise pickle.UnpicklingError(f"unknown reference {pid!r}")
        return self.table


def write_image(path: Path, image: bytes | bytearray, light: BuildResult, extra: Any) -> None:
    """Write the image and the side table (``light``, and ``extra`` for the reader) to
    ``path`` at once: a temporary file renamed over it."""
    side = io.BytesIO()
    _Pickler(side, pickle.HIGHEST_PROTOCOL).dump((light, extra))
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(image)
            f.write(side.getbuffer())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def read_image(path: Path) -> tuple[BuildResult, Any]:
    """The result in the image at ``path`` (mapped, not read) and the writer's ``extra``.

    Raises TableError when the file is not an image this process can use."""
    with open(path, "rb") as f:
        try:
            mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        except ValueError as exc:  # an empty file
            raise TableError(str(exc)) from None
    table = NameTable(mapped)
    try:
        light, extra = _Unpickler(io.BytesIO(mapped[table.length :]), table).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise TableError(f"a damaged side table ({exc})") from None
    if not isinstance(light, BuildResult):
        raise TableError("a damaged side table")
    return light, extra


Changes = dict[str, tuple[int, int]]  # policy id -> (names added, names removed)


def name_changes(old: BuildResult | None, new: BuildResult) -> Changes:
    """Per policy id of ``new``: the names (of its lists and its entries) it has that it did
    not have in ``old``, and those it no longer has; a new policy counts every name added.
    Either side may read from an image."""

    def names(result: BuildResult) -> dict[str, set[bytes]]:
        out = {}
        for file, report in zip(result.policies, result.reports, strict=True):
            found = set(report.listed)
            found.update(report.named)
            out[file.info.id] = found
        return out

    before = names(old) if old is not None else {}
    out: Changes = {}
    for policy_id, now in names(new).items():
        was = before.pop(policy_id, set())
        out[policy_id] = (len(now.difference(was)), len(was.difference(now)))
    return out


__all__ = [
    "EntryView",
    "ListedView",
    "PolicyReport",
    "TableError",
    "name_changes",
    "pack",
    "read_image",
    "write_image",
]
