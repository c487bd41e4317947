"""The exception tree. Errors caused by a peer's bytes carry the rcode they imply.

``rcode`` is what the answer to the offending packet says: FORMERR, NOTIMP, or (for
wire.BadVersion) BADVERS. Answer with ``wire.build_error_reply(data, exc.rcode, query)``.
"""

from __future__ import annotations


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


class SourceError(ResolverError):
    """A problem in a file written by a person: names the file, line and column (1-based)."""

    def __init__(self, message: str, source: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.column = column

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
