"""Unexpected exceptions where one query must not stop the rest: counted, and logged.

A listener or the forwarder catches what it did not expect (a bug, never a client's
bad bytes, which the engine answers itself) so that one query cannot stop the others.
Such an exception is never silent: the first of each kind at each place is logged
with its traceback, and again at most once a minute; every one is counted for
/metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from time import monotonic
from typing import Any

REPEAT_AFTER = 60.0  # seconds before the same kind of failure is logged again


class Faults:
    def __init__(self, log: Any = None, repeat_after: float = REPEAT_AFTER) -> None:
        self.log = log  # a structlog logger; None: counted only
        self.repeat_after = repeat_after
        self.total = 0
        self.by_place: dict[str, int] = {}
        self._logged: dict[tuple[str, str], float] = {}

    def report(self, where: str, exc: BaseException) -> None:
        self.total += 1
        self.by_place[where] = self.by_place.get(where, 0) + 1
        key = (where, type(exc).__name__)
        now = monotonic()
        last = self._logged.get(key)
        if last is not None and now - last < self.repeat_after:
            return
        self._logged[key] = now
        if self.log is not None:
            self.log.error(
                "unexpected_error",
                where=where,
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
                count=self.by_place[where],
                exc_info=exc,
            )


def causes(exc: BaseException, depth: int = 8) -> Iterator[BaseException]:
    """``exc``, then what caused it (``__cause__``, else ``__context__``), deepest last;
    at most ``depth`` of them. For saying why a connection failed in the words of the
    cause that says most (an untrusted certificate, a TLS alert, an errno)."""
    cause: BaseException | None = exc
    for _ in range(depth):
        if cause is None:
            return
        yield cause
        cause = cause.__cause__ or cause.__context__
