"""The exception tree. Errors caused by a peer's bytes carry the rcode they imply.

``rcode`` is what the answer to the offending packet says: FORMERR, NOTIMP, or (for
wire.BadVersion) BADVERS. Answer with ``wire.build_error_reply(data, exc.rcode, query)``.
"""

from __future__ import annotations

import reprlib
from typing import Any


class ResolverError(Exception):
    """Root of every error this package raises on purpose."""


class FormError(ResolverError):
    """A packet we cannot parse: answered with FORMERR when its header is readable."""

    rcode: int = 1  # FORMERR


class NotImplementedQuery(ResolverError):
    """A well-formed query we do not serve (opcode, class): answered with NOTIMP.

    ``query`` is the parsed query (a ``wire.Query``), so the answer can echo it.
    """

    rcode: int = 4  # NOTIMP

    def __init__(self, message: str, query: object = None) -> None:
        super().__init__(message)
        self.query = query


QUOTE_LIMIT = 200  # characters of a value an error message shows
MESSAGE_LIMIT = 4096  # characters of a message kept: a last guard against huge values


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters.

    A longer text keeps its start and says how long it was, so a message stays short
    (and cheap) whatever the file held.
    """
    if isinstance(value, str | bytes) and len(value) > limit:
        shown = repr(value[:limit])
        if len(shown) > limit + 3:  # escapes (\x00) made it longer
            shown = shown[: limit + 2] + shown[-1]
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{shown}... ({len(value):,} {unit})"
    shown = repr(value) if _small(value, limit) else _BOUNDED.repr(value)
    return shown if len(shown) <= limit + 3 else shown[:limit] + "..."


_BOUNDED = reprlib.Repr()
_BOUNDED.maxlevel, _BOUNDED.maxlist, _BOUNDED.maxtuple, _BOUNDED.maxdict = 3, 8, 8, 8
_BOUNDED.maxset = _BOUNDED.maxfrozenset = 8


def _small(value: object, budget: int) -> bool:
    """Whether ``value`` holds at most ``budget`` items all told, so that repr() is cheap.

    YAML aliases can nest a few lines into a list of a billion items (shared, so cheap
    to build); repr() of that would never end.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple | set | frozenset):
            budget -= len(item)
            stack.extend(item)
        elif isinstance(item, dict):
            budget -= 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, str | bytes):
            budget -= len(item) // 16
        if budget < 0:
            return False
    return True


class SourceError(ResolverError):
    """A problem in a file written by a person: names the file, line and column (1-based)."""

    def __init__(self, message: str, source: str, line: int = 0, column: int = 0) -> None:
        if len(message) > MESSAGE_LIMIT:
            message = message[:MESSAGE_LIMIT] + "..."
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.column = column

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled with its fields (a reload built in a child process sends it back).
        return (type(self), (self.message, self.source, self.line, self.column))

    def __str__(self) -> str:
        where = self.source
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ConfigError(SourceError):
    """The configuration file is invalid."""


class PolicyError(SourceError):
    """A policy file (or a list it references) is invalid."""
