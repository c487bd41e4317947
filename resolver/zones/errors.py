"""The errors of following a zone, in the package's tree, and their text for the log.

Every one derives from ``ResolverError`` (through ``ZoneError``); the few that stand for
a built-in error (a bad argument, a timeout, a closed connection) derive from it too, so
``except ValueError`` or ``except OSError`` still catches them.
"""

from __future__ import annotations

import socket

import dns.exception
import dns.message
import dns.rcode
import dns.tsig

from resolver.core.errors import ResolverError


class ZoneError(ResolverError):
    """Following a zone went wrong; the message says what, as a sentence."""


class SerialRangeError(ZoneError, ValueError):
    """A serial advanced by more than RFC 1982 allows."""


class TsigSecretError(ZoneError, ValueError):
    """A TSIG secret file that cannot be read or holds no usable secret."""


class CopyError(ZoneError, ValueError):
    """A saved copy of a zone that cannot be read as one."""


class TransferError(ZoneError):
    """The primary answered the transfer with an error rcode."""

    def __init__(self, rcode: int) -> None:
        super().__init__(f"the primary answered {dns.rcode.to_text(dns.rcode.Rcode(rcode))}")
        self.rcode = rcode


class BrokenTransfer(ZoneError):
    """A transfer that does not make sense (wrong order, serials, deletions): not applied."""


class TransferTimeout(ZoneError, TimeoutError):
    """The primary took too long to send a transfer."""


class TransferCut(ZoneError, ConnectionError):
    """The primary closed the connection before the end of the transfer."""


class TransferFailed(ZoneError):
    """A check or transfer that changed nothing. ``dirty``: the copy in memory was changed
    and must be read again from the file."""

    def __init__(self, message: str, dirty: bool = False) -> None:
        super().__init__(message)
        self.dirty = dirty


def describe(exc: BaseException) -> str:
    """A short readable text for an error met while checking or transferring a zone."""
    if isinstance(exc, dns.tsig.PeerError | dns.tsig.BadSignature | dns.message.UnknownTSIGKey):
        return f"TSIG rejected: {type(exc).__name__} {exc}".strip()
    if isinstance(exc, dns.tsig.BadTime | dns.tsig.BadKey | dns.tsig.BadAlgorithm):
        return f"TSIG rejected: {type(exc).__name__}"
    if isinstance(exc, dns.exception.Timeout | TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ZoneError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
