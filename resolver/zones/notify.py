"""NOTIFY (RFC 1996) for the zones this resolver follows: who may send one, and the answer.

``NotifyGate`` is pure: bytes in, an answer and a decision out. A NOTIFY from a listed
primary of a zone we follow is answered NOERROR with AA and the question echoed; from
anyone else REFUSED; for a zone we do not follow NOTAUTH (as BIND does). A NOTIFY
signed with TSIG is checked against the zones' keys and the answer is signed; an
unsigned one is accepted by source address alone (BIND's default ``allow-notify``).
``NotifyListener`` is what a serving process does with one: answer, log (refusals at a
bounded rate) and pass an accepted one on.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig

from resolver.core import wire
from resolver.core.clients import client_address
from resolver.core.errors import FormError
from resolver.sources.config_sections import ZoneConfig
from resolver.zones.errors import TsigSecretError
from resolver.zones.tsig import read_secret

OPCODE_NOTIFY = 4
REFUSED_LOG_BURST = 20  # refused NOTIFYs logged per window (the rest are counted)
REFUSED_LOG_WINDOW = 60.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_notify(data: bytes) -> bool:
    """A NOTIFY request: QR clear, opcode 4 (the rest of the header is not looked at)."""
    return len(data) > 2 and data[2] & 0xF8 == OPCODE_NOTIFY << 3


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """What to answer, and what it means."""

    reply: bytes | None  # None: no answer at all (an unreadable header)
    rcode: int
    zone: str | None  # the zone named in the question (lower case, trailing dot), if readable
    accepted: bool  # a listed primary says the zone changed: check it now
    reason: str = ""  # why it was not accepted
    serial: int | None = None  # the SOA serial sent along as a hint (RFC 1996 3.7)
    key: str | None = None  # the TSIG key name it was signed with


class NotifyGate:
    """Decides NOTIFY requests for the configured zones."""

    def __init__(self, zones: Iterable[ZoneConfig]) -> None:
        self.zones = {z.name: z for z in zones}
        self.primaries: dict[str, frozenset[Address]] = {}
        for zone in self.zones.values():
            hosts = (client_address(p.host) for p in zone.primaries)
            self.primaries[zone.name] = frozenset(a for a in hosts if a is not None)
        self.keyring: dict[dns.name.Name, dns.tsig.Key] = {}
        for zone in self.zones.values():
            if zone.tsig is not None:
                try:
                    key = read_secret(zone.tsig)
                except TsigSecretError:
                    continue  # transfers report the problem; a signed NOTIFY then fails
                self.keyring[key.name] = key

    def is_primary(self, zone: str, host: str) -> bool:
        address = client_address(host)
        return address is not None and address in self.primaries.get(zone, frozenset())

    def handle(self, data: bytes, client: str) -> NotifyOutcome:
        try:
            message = dns.message.from_wire(data, keyring=self.keyring)
        except dns.message.UnknownTSIGKey:
            return self._plain(data, dns.rcode.NOTAUTH, "signed with an unknown TSIG key")
        except (dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadAlgorithm, dns.tsig.BadKey):
            return self._plain(data, dns.rcode.NOTAUTH, "bad TSIG signature")
        except (dns.exception.DNSException, ValueError, struct.error) as exc:
            return self._plain(data, dns.rcode.FORMERR, f"malformed: {exc}")
        if message.opcode() != dns.opcode.NOTIFY or message.flags & dns.flags.QR:
            return self._plain(data, dns.rcode.FORMERR, "not a NOTIFY request")
        if len(message.question) != 1:
            return self._answer(message, dns.rcode.FORMERR, None, "not exactly one question")
        question = message.question[0]
        zone = question.name.to_text().lower()
        if question.rdtype in (dns.rdatatype.CDS, dns.rdatatype.CSYNC):
            return self._answer(message, dns.rcode.NOTIMP, zone, "NOTIFY(CDS/CSYNC) is not served")
        if question.rdtype != dns.rdatatype.SOA:
            return self._answer(message, dns.rcode.FORMERR, zone, "the question type is not SOA")
        config = self.zones.get(zone)
        if config is None or question.rdclass != dns.rdataclass.IN:
            return self._answer(message, dns.rcode.NOTAUTH, zone, "not a zone of this server")
        if not self.is_primary(zone, client):
            return self._answer(message, dns.rcode.REFUSED, zone, "not a primary of the zone")
        key = message.keyname.to_text() if message.had_tsig and message.keyname else None
        if key is not None and (
            config.tsig is None or dns.name.from_text(config.tsig.name) != message.keyname
        ):
            return self._answer(message, dns.rcode.REFUSED, zone, f"signed with another key {key}")
        serial = None
        for rrset in message.answer:
            if rrset.rdtype == dns.rdatatype.SOA and rrset.name == question.name and len(rrset):
                serial = int(rrset[0].serial)
        return self._answer(message, dns.rcode.NOERROR, zone, "", serial, key)

    @staticmethod
    def _answer(
        message: dns.message.Message,
        rcode: int,
        zone: str | None,
        reason: str,
        serial: int | None = None,
        key: str | None = None,
    ) -> NotifyOutcome:
        response = dns.message.make_response(message)
        response.set_rcode(dns.rcode.Rcode(rcode))
        if rcode == dns.rcode.NOERROR:
            response.flags |= dns.flags.AA
        reply = response.to_wire()
        return NotifyOutcome(reply, rcode, zone, rcode == dns.rcode.NOERROR, reason, serial, key)

    @staticmethod
    def _plain(data: bytes, rcode: int, reason: str) -> NotifyOutcome:
        """An unsigned error answer built from the raw bytes: the question echoed if readable."""
        zone = None
        question = b""
        if len(data) >= 12 and data[4:6] == b"\x00\x01":
            try:
                name, pos = wire.read_name(data, 12)
                if pos + 4 <= len(data):
                    question = data[12 : pos + 4]
                    zone = wire.name_to_text(name).lower().rstrip(".") + "."
            except FormError:
                question = b""
        if len(data) < 12:
            return NotifyOutcome(None, rcode, None, False, reason)
        qid, flags = struct.unpack_from("!HH", data)
        flags = wire.QR | (flags & (wire.OPCODE_MASK | wire.RD)) | (rcode & 0xF)
        reply = wire.HEADER.pack(qid, flags, 1 if question else 0, 0, 0, 0) + question
        return NotifyOutcome(reply, rcode, zone, False, reason)


class NotifyListener:
    """What a serving process does with a NOTIFY: answer it, log it, pass it on with
    ``forward(zone, client)`` (to the Secondary, or over the pipe to the supervisor)."""

    def __init__(
        self, zones: Iterable[ZoneConfig], forward: Callable[[str, str], None], log: Any
    ) -> None:
        self.gate = NotifyGate([z for z in zones if z.primaries])
        self.forward = forward
        self.log = log
        self.clock = time.monotonic
        self._window = -REFUSED_LOG_WINDOW
        self._logged = 0
        self._suppressed = 0

    def __call__(self, data: bytes, client: str) -> bytes | None:
        outcome = self.gate.handle(data, client)
        if outcome.accepted and outcome.zone is not None:
            self.log.info(
                "notify_received", zone=outcome.zone, client=client, serial=outcome.serial
            )
            self.forward(outcome.zone, client)
        elif self._may_log():
            fields: dict[str, Any] = {}
            if self._suppressed:
                fields["not_logged_before"] = self._suppressed
                self._suppressed = 0
            self.log.warning(
                "notify_refused",
                zone=outcome.zone,
                client=client,
                reason=outcome.reason,
                rcode=dns.rcode.to_text(dns.rcode.Rcode(outcome.rcode)),
                **fields,
            )
        return outcome.reply

    def _may_log(self) -> bool:
        """Refused NOTIFYs are logged at most REFUSED_LOG_BURST times a REFUSED_LOG_WINDOW:
        anyone can send them, and the log must not be theirs to fill."""
        now = self.clock()
        if now - self._window >= REFUSED_LOG_WINDOW:
            self._window = now
            self._logged = 0
        if self._logged < REFUSED_LOG_BURST:
            self._logged += 1
            return True
        self._suppressed += 1
        return False
