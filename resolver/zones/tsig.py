"""TSIG (RFC 8945) for followed zones: the key read from its secret file, and the check of
every message of a transfer, with dnspython."""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import Any

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tsig

from resolver.core import wire
from resolver.sources.config_sections import TsigKey
from resolver.zones.errors import BrokenTransfer, TsigSecretError

MAX_UNSIGNED = 99  # RFC 8945 5.3.1: unsigned messages allowed between signed ones
_BIND_SECRET = re.compile(r'secret\s+"([^"]+)"')


def read_secret(key: TsigKey) -> dns.tsig.Key:
    """The TSIG key: its base64 secret from ``secret_file`` (the bare secret, or a BIND key
    statement). Raises TsigSecretError (a ValueError) with a readable message."""
    try:
        text = key.secret_file.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror
        raise TsigSecretError(f"cannot read the TSIG secret {key.secret_file}: {reason}") from None
    found = _BIND_SECRET.search(text)
    secret = (found.group(1) if found else text).strip()
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise TsigSecretError(f"the TSIG secret in {key.secret_file} is not base64") from None
    if not raw:
        raise TsigSecretError(f"the TSIG secret in {key.secret_file} is empty")
    return dns.tsig.Key(key.name, raw, key.algorithm)


class TsigChain:
    """Checks the TSIG of every message of a transfer (RFC 8945 5.3.1), with dnspython."""

    def __init__(self, key: dns.tsig.Key | None, request_mac: bytes) -> None:
        self.key = key
        self.request_mac = request_mac
        self.ctx: Any = None
        self.unsigned = 0
        self.last_signed = False

    def check(self, data: bytes, tsig_start: int | None, first: bool) -> None:
        """One message of the transfer; ``tsig_start``: where its TSIG record starts (None:
        unsigned); ``first``: the first message (which must be signed)."""
        if self.key is None:
            if tsig_start is not None:
                raise BrokenTransfer("the primary signed a transfer we did not sign")
            return
        if tsig_start is None:
            if first:
                raise BrokenTransfer("missing TSIG on the first message")
            self.unsigned += 1
            if self.unsigned > MAX_UNSIGNED:
                raise BrokenTransfer("too many unsigned messages in a row")
            self.ctx.update(data)
            self.last_signed = False
            return
        owner, used = dns.name.from_wire(data, tsig_start)
        pos = tsig_start + used
        _, _, _, rdlen = wire.RR_FIXED.unpack_from(data, pos)
        rdata = dns.rdata.from_wire(dns.rdataclass.ANY, dns.rdatatype.TSIG, data, pos + 10, rdlen)
        self.ctx = dns.tsig.validate(  # type: ignore[no-untyped-call]
            data,
            self.key,
            owner,
            rdata,
            int(time.time()),
            self.request_mac,
            tsig_start,
            self.ctx,
            True,
        )
        self.unsigned = 0
        self.last_signed = True
