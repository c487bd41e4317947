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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast, overload

from resolver.core.layers import LayeredPolicy
from resolver.core.matcher import CompiledPolicy, Outcomes, PackedPolicy, Scope
from resolver.core.nametable import NameTable, TableError, pack as pack_names
from resolver.core.verdict import Action
from resolver.sources.policy_entries import Entry
from resolver.sources.snapshot import BuildResult, PolicyReport

SMALL = 2000  # a policy with more entries than this keeps them in the image
_TABLE = "names"


class ListedView:
    """The names of one policy's lists (wire form), read from the shared table."""

    def __init__(self, policy: PackedPolicy, order: int, count: int) -> None:
        self.policy = policy
        self.order = order
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[bytes]:
        return self.policy.tagged(self.order)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes) or self.policy.packed is None:
            return False
        number = self.policy.packed.get(name)
        return number is not None and self.order in self.policy.tags[number]


@dataclass(frozen=True)
class EntryView(Sequence[Entry]):
    """A policy's entries kept in the image, one line each: name, form, action."""

    table: NameTable
    start: int
    end: int
    count: int

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Entry]:
        text = bytes(self.table.extra[self.start : self.end]).decode()
        for line in text.splitlines():
            name, scope, action = line.split("\t")
            yield Entry(name, Scope(int(scope)), Action(int(action)))

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Entry]: ...
    def __getitem__(self, index: int | slice) -> Entry | Sequence[Entry]:
        return list(self)[index]


def pack(result: BuildResult) -> tuple[bytearray, BuildResult]:
    """The image of ``result`` and the result as it reads from it (see the module doc)."""
    policy = result.snapshot.policy
    layered = isinstance(policy, LayeredPolicy)
    compiled = policy.layers[0].qname if layered and policy.layers else policy
    if layered and (not policy.layers or policy.layers[0].source):
        compiled = CompiledPolicy()  # zones only: the policy files' layer is empty
    listed = [report.listed for report in result.reports]
    numbered = Outcomes()

    def items() -> Iterator[tuple[bytes, int]]:
        for name, value in compiled.table.items():
            tags = frozenset(k for k, names in enumerate(listed) if name in names)
            yield name, numbered.number(value, tags)

    extra = bytearray()
    spans: list[tuple[int, int, int] | None] = []
    for file in result.policies:
        if len(file.entries) <= SMALL:
            spans.append(None)
            continue
        start = len(extra)
        extra += "".join(
            f"{e.name}\t{int(e.scope)}\t{int(e.action)}\n" for e in file.entries
        ).encode()
        spans.append((start, len(extra), len(file.entries)))
    image = pack_names(items(), len(compiled.table), bytes(extra))
    del extra
    names = NameTable(image)
    packed = PackedPolicy.of(compiled, names, numbered)
    return image, _light(result, packed, names, spans)


def _light(
    result: BuildResult,
    packed: PackedPolicy,
    names: NameTable,
    spans: list[tuple[int, int, int] | None],
) -> BuildResult:
    policy: CompiledPolicy = packed
    old = result.snapshot.policy
    if isinstance(old, LayeredPolicy):
        layers = list(old.layers)
        if layers and not layers[0].source:
            layers[0] = replace(layers[0], qname=packed)
        policy = LayeredPolicy(layers)
    reports = [
        replace(report, listed=cast(set[bytes], ListedView(packed, order, len(report.listed))))
        for order, report in enumerate(result.reports)
    ]
    policies = tuple(
        file if span is None else replace(file, entries=cast(Any, EntryView(names, *span)))
        for file, span in zip(result.policies, spans, strict=True)
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


def materialized(result: BuildResult) -> BuildResult:
    """``result`` with real sets and tuples where it has views (for set arithmetic)."""
    reports = [replace(r, listed=set(r.listed)) for r in result.reports]
    policies = tuple(replace(p, entries=tuple(p.entries)) for p in result.policies)
    return BuildResult(result.snapshot, reports, policies, result.zones)


__all__ = [
    "EntryView",
    "ListedView",
    "PolicyReport",
    "TableError",
    "materialized",
    "pack",
    "read_image",
    "write_image",
]
