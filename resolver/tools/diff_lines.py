"""The lines of GET /entries on one side of `sinkhole diff`, and the names they are for.

The lines are kept in order (the server reads its entries in that order) and once in a
set (to tell two sides apart); the names (text form, the first field of a line) are
worked out from them when first asked for, or at once with ``prepare``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from functools import cached_property
from itertools import compress
from operator import itemgetter


class Lines:
    """/entries lines, each kept once in order and once in a set; the names they are for
    (text form) worked out when first asked for, once every line is added. The lines
    may come a few at a time (``add``, ``add_text``)."""

    def __init__(self, lines: list[bytes] | None = None) -> None:
        self.lines: list[bytes] = []
        self.unique: set[bytes] = set()  # the lines, each once
        self.above: set[bytes] | None = None  # the parents of the names, when worked out
        if lines:
            self.add(lines)

    def add(self, lines: list[bytes]) -> None:
        self.lines += lines
        self.unique.update(lines)

    def add_text(self, chunks: Iterable[bytes]) -> None:
        """The lines of the text ``chunks`` make together (a line may span chunks; the
        last one needs no newline)."""
        rest = b""
        for chunk in chunks:
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            self.add(lines)
        if rest:
            self.add([rest])

    @cached_property
    def names(self) -> list[bytes]:
        """The name of each line."""
        return list(map(line_name, self.lines))

    @cached_property
    def distinct(self) -> set[bytes]:
        return set(self.names)

    @cached_property
    def repeated(self) -> set[bytes]:
        """The names of more than one line."""
        if len(self.names) == len(self.distinct):
            return set()
        return {name for name, count in Counter(self.names).items() if count > 1}

    def prepare(self) -> None:
        """Work out now, not when first asked for, the names (and which are repeated) and
        the names above them (for ``under``): the running server's, while the new files
        are built."""
        self.repeated  # noqa: B018 - worked out from the names and the distinct names
        above: set[bytes] = set()
        level = self.distinct
        while level:
            level = {name.partition(b".")[2] for name in level}
            level.discard(b"")
            level -= above
            above |= level
        self.above = above

    def under(self, changed: set[bytes]) -> set[bytes]:
        """The names in ``changed`` or under a name in it (names_under): when the names above
        every name are known, only a changed name among them can have names under it,
        and the names are looked through for those alone, if any."""
        if self.above is None:
            return names_under(self.distinct, changed)
        found = self.distinct & changed
        above = changed & self.above
        if above:
            found |= names_under(self.distinct, above)
        return found

    def changes_from(self, before: Lines) -> tuple[set[bytes], set[bytes]]:
        """The lines added since ``before``, and those removed."""
        return self.unique - before.unique, before.unique - self.unique

    def lines_at(self, names: set[bytes]) -> list[bytes]:
        """The lines for ``names``, in order."""
        return list(compress(self.lines, map(names.__contains__, self.names)))


def line_name(line: bytes) -> bytes:
    """The name a line is for (text form): its first field."""
    return line.partition(b"\t")[0]


def names_under(names: set[bytes], changed: set[bytes]) -> set[bytes]:
    """The names of ``names`` in ``changed`` or under a name in it (text form).

    A name under a changed name ends with a dot and that name: the names whose last few
    bytes (as many as the shortest changed name has, and its dot) end no changed name
    are set aside at once, in C; for the others, whether a parent name is, or is under, a
    changed name is worked out once per parent name."""
    size = 1 + min(map(len, changed))
    ends = {(b"." + name)[-size:] for name in changed}
    maybe = compress(names, map(ends.__contains__, map(itemgetter(slice(-size, None)), names)))
    known: dict[bytes, bool] = {b"": False}  # per parent name; b"": above the top level
    found = names & changed
    for name in maybe:
        passed = []
        above = name.partition(b".")[2]
        while above not in known:
            if above in changed:
                known[above] = True
                break
            passed.append(above)
            above = above.partition(b".")[2]
        under = known[above]
        for parent in passed:
            known[parent] = under
        if under:
            found.add(name)
    return found


def parents(name: bytes) -> Iterator[bytes]:
    """The parents of a name in text form, nearest first."""
    while True:
        dot = name.find(b".")
        if dot < 0:
            return
        name = name[dot + 1 :]
        yield name
