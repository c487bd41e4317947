"""A long plain ``block:`` list read line by line, without building a YAML node per name.

A register exported to YAML is mostly one top-level ``block:`` key followed by a
million lines ``  - name``. YAML parsers keep a node and two positions per item: a
million names take seconds and hundreds of MiB. Here the list is cut out of the text
(its lines left empty, so every other line keeps its number) and its items read with
one regular expression; the rest of the file goes through the YAML parser as before.

An item in the common form (a plain or quoted name in ASCII, which YAML reads as text)
is checked here; any other item on one line (a ``*.name`` in quotes, a name in Unicode,
something that is no name) is handed to the entry reader as the YAML node it would have
been, so its result or its error is exactly the one the full parser gives. A line in the
list that is not an item on one line (a mapping, a continued scalar) means the list is
not plain: the caller parses the whole file as YAML.
"""

from __future__ import annotations

import array
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import yaml

from resolver.core.matcher import Scope
from resolver.core.verdict import Action
from resolver.sources.names import public_suffixes
from resolver.sources.policy_entries import Entry, EntryContext, plain_entry, read_entry
from resolver.sources.yamlsource import LOADER

MAX_NAME = 253

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
# Two labels at least, the last not all digits; never what YAML reads as a float (1_0.5).
_NAME = (
    r"(?![0-9][0-9_]*\.[0-9_]*(?:[ \r#'\"]|$))(?:" + _LABEL + r"\.)+(?![0-9]+(?![A-Za-z0-9_-]))"
) + _LABEL
_TAIL = r"(?:[ ]+#[^\n]*)?[ \r]*"
_VALUE = r"(=?" + _NAME + r"|\"(?:=|\*\.)?" + _NAME + r"\"|'(?:=|\*\.)?" + _NAME + r"')"
_KEY = re.compile(r"^block:[ ]*(?:#[^\n]*)?\r?\n", re.M)
# A column-0 line that is no item, after the newline before it: the regular expression
# engine looks for the newline alone, not at every character for the start of a line.
_END = re.compile(r"\n(?:[^\s#-]|-(?![ ]))")
_FIRST = re.compile(r"^([ ]*)-[ ]", re.M)
_BLANK = re.compile(r"[ ]*(?:#.*)?\r?")


@functools.cache
def _rows(indent: str) -> re.Pattern[str]:
    """One match per line: the value of an item in the common form (``- name``, one space
    after the dash, at ``indent``), or nothing."""
    return re.compile(r"^(?:" + indent + r"- " + _VALUE + _TAIL + r"|[^\n]*)$", re.M)


@dataclass(frozen=True)
class PlainList:
    """The text with the list cut out (``block: []`` in its place), and the list's lines."""

    rest: str
    line: int  # the 0-based line of ``block:``
    rows: list[str]  # per line of the list: an item's value in the common form, or ""
    indent: str  # of every item
    nodes: dict[int, yaml.Node]  # the other items, by row


def cut(text: str) -> PlainList | None:
    """The ``block:`` list of ``text`` cut out, or None when there is none to cut."""
    key = _key(text, 0)
    if key is None or _key(text, key.end()) is not None:
        return None  # no such key, or twice (the YAML parser reports that)
    start = key.end()
    end = _end(text, start)
    stop = end - 1 if end > start and text[end - 1] == "\n" else end  # the last line's end
    first = _FIRST.search(text, start, stop)
    indent = first.group(1) if first is not None else ""
    pattern = _rows(indent)
    rows: list[str] = []
    for a, b in _windows(text, start, stop):
        rows += pattern.findall(text, a, b)
    count = text.count("\n", start, stop) + 1 if stop > start else 0
    if len(rows) != count:
        return None
    line = text.count("\n", 0, key.start())
    nodes: dict[int, yaml.Node] = {}
    if not all(rows):
        lines = text[start:stop].split("\n")
        for index, value in enumerate(rows):
            if value or _BLANK.fullmatch(lines[index]):
                continue
            item = lines[index].rstrip(" \r")
            if not item.startswith(indent + "-"):
                return None  # not an item, or one at another indentation
            # Composed now, so that a line YAML cannot read sends the file to the parser.
            node = _node(item[len(indent) :], line + 2 + index, len(indent))
            if node is None:
                return None
            nodes[index] = node
        del lines
    rest = text[: key.start()] + "block: []\n" + "\n" * count + text[end:]
    return PlainList(rest, line, rows, indent, nodes)


class PlainEntries(Sequence[Entry]):
    """Entries kept compactly: a name alone stands for an entry of the common form (the
    name and everything under it, with the policy's action), its line in ``lines``; any
    other entry is itself. Entry objects are made when asked for; the policy build reads
    the names directly (``items``)."""

    def __init__(
        self, items: list[str | Entry], lines: array.array[int], action: Action, column: int
    ) -> None:
        self.items = items
        self.lines = lines
        self.action = action
        self.column = column
        self._made: tuple[Entry, ...] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _entry(self, index: int) -> Entry:
        item = self.items[index]
        if isinstance(item, str):
            return plain_entry(item, Scope.SUBTREE, self.action, self.lines[index], self.column)
        return item

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Entry]: ...
    def __getitem__(self, index: int | slice) -> Entry | Sequence[Entry]:
        if isinstance(index, slice):
            return tuple(self._entry(i) for i in range(len(self.items))[index])
        return self._entry(range(len(self.items))[index])

    def __iter__(self) -> Iterator[Entry]:
        # Made once and kept: the tools read the entries over and over; the server reads
        # ``items`` alone, so it never holds a million Entry objects.
        if self._made is None:
            self._made = tuple(map(self._entry, range(len(self.items))))
        return iter(self._made)

    def extend(self, entries: list[Entry]) -> None:
        """Entries after the list (those under ``allow:``)."""
        self.items.extend(entries)
        self.lines.extend(e.line for e in entries)


_LENGTH = tuple(bytes((n,)) for n in range(64))


def plain_wire(name: str) -> bytes:
    """The wire form of a name alone (an item of PlainEntries: ASCII, lower case, labels
    of 1 to 63 characters, checked when read): what wire.text_to_name gives for it, without
    its checks."""
    return b"".join([_LENGTH[len(label)] + label for label in name.encode().split(b".")]) + b"\x00"


WINDOW = 1 << 20  # characters a regular expression scans at once (the GIL is held meanwhile)


def _windows(text: str, start: int, stop: int) -> Iterator[tuple[int, int]]:
    """``text[start:stop]`` in windows of about WINDOW characters, each of whole lines (the
    newline that ends one is left out of both)."""
    while start < stop:
        cut = text.rfind("\n", start, min(start + WINDOW, stop))
        end = stop if start + WINDOW >= stop or cut < 0 else cut
        yield start, end
        start = end + 1
    if start == stop and stop > 0 and text[stop - 1] == "\n":
        yield start, stop  # the empty last line


def _key(text: str, start: int) -> re.Match[str] | None:
    """The first ``block:`` key line at or after ``start``: each ``block:`` found (a fast
    search for the text) at the start of a line is matched with _KEY."""
    at = text.find("block:", start)
    while at >= 0:
        if at == 0 or text[at - 1] == "\n":
            found = _KEY.match(text, at)
            if found is not None:
                return found
        at = text.find("block:", at + 1)
    return None


def _end(text: str, start: int) -> int:
    """Where the list from ``start`` (the start of the line after ``block:``) ends: at the
    first column-0 line that is no item (_END), or the end of the text. Searched a window
    at a time: a file of a million lines does not stop the other threads."""
    for a, b in _windows(text, start, len(text)):
        found = _END.search(text, a - 1, b + 1 if b < len(text) else b)
        if found is not None:
            return found.start() + 1
    return len(text)


def read_plain(ctx: EntryContext, plain: PlainList) -> PlainEntries:
    """The entries of the list, in order."""
    fast = ctx.action is not Action.REDIRECT
    psl = public_suffixes()
    listed, wildcard, exceptions = psl.listed, psl.wildcard, psl.exceptions
    seen = ctx.plain
    action = ctx.action
    column = len(plain.indent) + 3
    nodes = plain.nodes
    out: list[str | Entry] = []
    append = out.append
    lines = array.array("I")
    line_of = lines.append
    subtree, exact, below = Scope.SUBTREE, Scope.EXACT, Scope.BELOW
    number = plain.line + 1
    for index, value in enumerate(plain.rows):
        number += 1
        if not value:
            node = nodes.get(index)
            if node is not None:
                append(read_entry(ctx, node, "block"))
                line_of(number)
            continue  # else a blank or comment line
        if fast:
            name = value[1:-1] if value[0] in "'\"" else value
            scope = subtree
            if name[0] == "=":
                name = name[1:]
                scope = exact
            elif name[0] == "*":
                name = name[2:]
                scope = below
            if not name.islower():
                name = name.lower()
            key = name if scope is subtree else ("=" if scope is exact else "*.") + name
            if (
                len(name) <= MAX_NAME
                and key not in seen
                and (
                    scope is exact
                    or not (
                        name in listed
                        or (name not in exceptions and name.partition(".")[2] in wildcard)
                    )
                )
            ):
                seen[key] = number
                append(
                    name if scope is subtree else plain_entry(name, scope, action, number, column)
                )
                line_of(number)
                continue
        # Any other item: the node the YAML parser would have made, read as it would.
        node = _node("- " + value, number, len(plain.indent))
        assert node is not None  # an item in the common form is one YAML scalar
        append(read_entry(ctx, node, "block"))
        line_of(number)
    return PlainEntries(out, lines, action, column)


def _node(item: str, line: int, column: int) -> yaml.Node | None:
    """The YAML node of the item ``- value`` whose dash is at ``line`` (1-based) and
    ``column`` (0-based), or None when it is not one item with a single-line scalar."""
    try:
        node = yaml.compose(item + "\n", Loader=LOADER)
    except yaml.YAMLError:
        return None
    if not isinstance(node, yaml.SequenceNode) or len(node.value) != 1:
        return None
    value = node.value[0]
    if not isinstance(value, yaml.ScalarNode) or value.end_mark.line != 0:
        return None
    value.start_mark = _moved(value.start_mark, line - 1, column)
    value.end_mark = _moved(value.end_mark, line - 1, column)
    return value


def _moved(mark: yaml.Mark, line: int, column: int) -> yaml.Mark:
    return yaml.Mark(mark.name, mark.index, line, mark.column + column, None, None)  # type: ignore[arg-type]
