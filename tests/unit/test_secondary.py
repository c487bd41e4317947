"""Following zones as a secondary: serial arithmetic, NOTIFY answers, the copy on disk,
refresh/retry/expire timers (with a fake clock) and the follower's decisions."""

from __future__ import annotations

import ast
import base64
import builtins
import importlib
import os
import stat
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.zone
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.core import wire
from resolver.core.cache import Cache, CacheSettings
from resolver.core.clients import ClientAcl
from resolver.core.endpoint import Endpoint
from resolver.core.engine import Engine
from resolver.core.errors import FormError, ResolverError
from resolver.core.matcher import CompiledPolicy
from resolver.core.snapshot import Snapshot
from resolver.sources.config_sections import TsigKey, ZoneConfig
from resolver.zones import errors
from resolver.zones.errors import BrokenTransfer
from resolver.zones.follower import ZoneFollower
from resolver.zones.notify import (
    REFUSED_LOG_BURST,
    REFUSED_LOG_WINDOW,
    NotifyGate,
    NotifyListener,
    is_notify,
)
from resolver.zones.records import Records, Soa, name_text
from resolver.zones.serial import serial_add, serial_gt, serial_lt
from resolver.zones.store import load_copy, peek_soa, write_atomically, write_copy
from resolver.zones.timers import MAX_INTERVAL, MIN_INTERVAL, NO_COPY_RETRY, Timers, ZoneClock
from resolver.zones.tsig import read_secret
from resolver.zones.xfr import Incoming, read_message

ZONE = "rpz.example."
PRIMARY = Endpoint("192.0.2.53", 53)
OTHER_PRIMARY = Endpoint("2001:db8::53", 5300)
SECRET = base64.b64encode(b"k" * 32).decode()

ZONE_TEXT = """$ORIGIN rpz.example.
$TTL 300
@ IN SOA ns.rpz.example. hostmaster.rpz.example. {serial} 3600 600 86400 300
@ IN NS localhost.
bad.test IN CNAME .
*.wild.test IN CNAME .
"""


# --- serial number arithmetic (RFC 1982) -------------------------------------------------


def test_serial_comparison_follows_rfc_1982() -> None:
    assert serial_gt(2, 1) and serial_lt(1, 2)
    assert not serial_gt(1, 1) and not serial_lt(1, 1)
    assert serial_gt(0, 2**32 - 1)  # wraps around
    assert serial_gt(5, 2**32 - 10)
    assert serial_lt(2**32 - 10, 5)
    assert serial_gt(2**31 - 1, 0)
    assert not serial_gt(2**31 + 1, 0)  # more than half the space ahead is behind
    assert serial_lt(2**31 + 1, 0)


def test_serials_exactly_half_the_space_apart_are_undefined() -> None:
    for a, b in ((0, 2**31), (2**31, 0), (7, 2**31 + 7)):
        assert not serial_gt(a, b) and not serial_lt(a, b)


def test_serial_addition_wraps_and_is_bounded() -> None:
    assert serial_add(2**32 - 1, 1) == 0
    assert serial_add(10, 2**31 - 1) == 2**31 + 9
    with pytest.raises(ValueError):
        serial_add(1, 2**31)
    with pytest.raises(ValueError):
        serial_add(1, -1)


@given(st.integers(0, 2**32 - 1), st.integers(1, 2**31 - 1))
def test_adding_makes_a_serial_newer(serial: int, n: int) -> None:
    later = serial_add(serial, n)
    assert serial_gt(later, serial)
    assert serial_lt(serial, later)
    assert not serial_gt(serial, later)


# --- the exception tree -----------------------------------------------------------------------


def test_zones_code_raises_only_resolver_errors() -> None:
    """Every exception the zones modules raise by name is a ResolverError (``raise`` alone
    passes on a library's or the system's error, which the callers wrap)."""
    package = Path(errors.__file__).parent
    raised = set()
    for path in sorted(package.glob("*.py")):
        name = "resolver.zones" + ("" if path.stem == "__init__" else f".{path.stem}")
        module = importlib.import_module(name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            assert isinstance(target, ast.Name), f"{path.name}:{node.lineno}"
            kind = getattr(module, target.id, None) or getattr(builtins, target.id)
            assert isinstance(kind, type) and issubclass(kind, ResolverError), (
                f"{path.name}:{node.lineno} raises {target.id}"
            )
            raised.add(kind)
    assert {errors.TransferFailed, errors.BrokenTransfer, FormError} <= raised
    classes = [v for v in vars(errors).values() if isinstance(v, type)]
    own = [kind for kind in classes if kind.__module__ == errors.__name__]
    assert errors.TransferCut in own
    assert all(issubclass(kind, errors.ZoneError) for kind in own)


# --- NOTIFY -----------------------------------------------------------------------------------


def zone_config(tmp_path: Path, **kwargs: Any) -> ZoneConfig:
    values: dict[str, Any] = {"primaries": (PRIMARY, OTHER_PRIMARY)}
    values.update(kwargs)
    return ZoneConfig(ZONE, tmp_path / "rpz.example.zone", **values)


def notify_message(
    zone: str = ZONE, rdtype: int = dns.rdatatype.SOA, serial: int | None = 7
) -> dns.message.Message:
    message = dns.message.make_query(zone, rdtype)
    message.flags = dns.flags.AA
    message.set_opcode(dns.opcode.NOTIFY)
    if serial is not None and rdtype == dns.rdatatype.SOA:
        message.answer.append(
            dns.rrset.from_text(zone, 300, "IN", "SOA", f"ns.{zone} h.{zone} {serial} 1 1 1 1")
        )
    return message


def check_notify_reply(reply: bytes | None, request: dns.message.Message, rcode: int) -> None:
    assert reply is not None
    answer = dns.message.from_wire(reply)
    assert answer.id == request.id
    assert answer.opcode() == dns.opcode.NOTIFY
    assert answer.flags & dns.flags.QR
    assert answer.rcode() == rcode
    assert bool(answer.flags & dns.flags.AA) == (rcode == dns.rcode.NOERROR)
    assert answer.question == request.question  # the question echoed
    assert not answer.answer


def test_notify_from_a_listed_primary_is_answered_noerror_with_aa(tmp_path: Path) -> None:
    gate = NotifyGate([zone_config(tmp_path)])
    request = notify_message(serial=2024)
    outcome = gate.handle(request.to_wire(), "192.0.2.53")
    check_notify_reply(outcome.reply, request, dns.rcode.NOERROR)
    assert outcome.accepted
    assert outcome.zone == ZONE
    assert outcome.serial == 2024
    # Any listed primary, any letter case in the question, IPv6 too.
    request = notify_message("RPZ.Example.", serial=None)
    outcome = gate.handle(request.to_wire(), "2001:db8::53")
    check_notify_reply(outcome.reply, request, dns.rcode.NOERROR)
    assert outcome.accepted and outcome.zone == ZONE and outcome.serial is None
    # The socket layer may show IPv4 as v4-mapped IPv6.
    assert gate.handle(request.to_wire(), "::ffff:192.0.2.53").accepted


def test_notify_from_elsewhere_is_refused(tmp_path: Path) -> None:
    gate = NotifyGate([zone_config(tmp_path)])
    request = notify_message()
    outcome = gate.handle(request.to_wire(), "198.51.100.1")
    check_notify_reply(outcome.reply, request, dns.rcode.REFUSED)
    assert not outcome.accepted
    assert outcome.zone == ZONE
    assert "primary" in outcome.reason


def test_notify_for_a_zone_not_followed_is_notauth(tmp_path: Path) -> None:
    gate = NotifyGate([zone_config(tmp_path)])
    request = notify_message("other.example.")
    outcome = gate.handle(request.to_wire(), "192.0.2.53")
    check_notify_reply(outcome.reply, request, dns.rcode.NOTAUTH)
    assert not outcome.accepted and outcome.zone == "other.example."
    # A zone without primaries is not followed by transfer: its NOTIFY is refused.
    local = ZoneConfig("local.example.", tmp_path / "l.zone")
    gate = NotifyGate([local])
    request = notify_message("local.example.")
    outcome = gate.handle(request.to_wire(), "192.0.2.53")
    check_notify_reply(outcome.reply, request, dns.rcode.REFUSED)


def test_notify_of_other_types_and_malformed_notify(tmp_path: Path) -> None:
    gate = NotifyGate([zone_config(tmp_path)])
    request = notify_message(rdtype=dns.rdatatype.A)
    check_notify_reply(gate.handle(request.to_wire(), "192.0.2.53").reply, request, 1)  # FORMERR
    request = notify_message(rdtype=dns.rdatatype.CDS)
    check_notify_reply(
        gate.handle(request.to_wire(), "192.0.2.53").reply, request, dns.rcode.NOTIMP
    )
    data = notify_message().to_wire()
    outcome = gate.handle(data[:-5], "192.0.2.53")  # the SOA hint cut short
    assert outcome.rcode == dns.rcode.FORMERR and not outcome.accepted
    assert outcome.reply is not None
    assert outcome.reply[:2] == data[:2] and outcome.reply[2] & 0x80  # same ID, a response
    assert (outcome.reply[2] >> 3) & 0xF == dns.opcode.NOTIFY
    assert gate.handle(data[:11], "192.0.2.53").reply is None  # no header: no answer


def test_is_notify_reads_only_the_opcode_and_qr_bit() -> None:
    data = notify_message().to_wire()
    assert is_notify(data)
    assert not is_notify(dns.message.make_query(ZONE, "SOA").to_wire())
    response = bytearray(data)
    response[2] |= 0x80
    assert not is_notify(bytes(response))
    assert not is_notify(b"\x00\x01")


def key_file(tmp_path: Path, text: str = SECRET) -> Path:
    path = tmp_path / "xfr.secret"
    path.write_text(text)
    return path


def test_signed_notify_is_verified_and_the_answer_signed(tmp_path: Path) -> None:
    tsig = TsigKey("xfr-key", "hmac-sha256", key_file(tmp_path))
    gate = NotifyGate([zone_config(tmp_path, tsig=tsig)])
    keyring = dns.tsigkeyring.from_text({"xfr-key": ("hmac-sha256", SECRET)})
    request = notify_message()
    request.use_tsig(keyring, "xfr-key", algorithm="hmac-sha256")
    data = request.to_wire()
    outcome = gate.handle(data, "192.0.2.53")
    assert outcome.accepted and outcome.key == "xfr-key."
    answer = dns.message.from_wire(outcome.reply or b"", keyring=keyring, request_mac=request.mac)
    assert answer.had_tsig and answer.rcode() == dns.rcode.NOERROR

    wrong = dns.tsigkeyring.from_text({"xfr-key": ("hmac-sha256", base64.b64encode(b"x" * 32))})
    request = notify_message()
    request.use_tsig(wrong, "xfr-key", algorithm="hmac-sha256")
    outcome = gate.handle(request.to_wire(), "192.0.2.53")
    assert not outcome.accepted and outcome.rcode == dns.rcode.NOTAUTH
    unknown = dns.tsigkeyring.from_text({"someone": ("hmac-sha256", SECRET)})
    request = notify_message()
    request.use_tsig(unknown, "someone", algorithm="hmac-sha256")
    outcome = gate.handle(request.to_wire(), "192.0.2.53")
    assert not outcome.accepted and outcome.rcode == dns.rcode.NOTAUTH
    assert outcome.zone == ZONE and outcome.reply is not None
    # An unsigned NOTIFY from a listed primary is accepted by address (BIND's default).
    assert gate.handle(notify_message().to_wire(), "192.0.2.53").accepted


def test_tsig_secret_file_bare_or_bind_key_statement(tmp_path: Path) -> None:
    bare = TsigKey("k", "hmac-sha256", key_file(tmp_path, SECRET + "\n"))
    assert read_secret(bare).secret == b"k" * 32
    statement = f'key "k" {{\n\talgorithm hmac-sha256;\n\tsecret "{SECRET}";\n}};\n'
    assert read_secret(TsigKey("k", "hmac-sha256", key_file(tmp_path, statement))).secret == (
        b"k" * 32
    )
    with pytest.raises(ValueError, match="not base64"):
        read_secret(TsigKey("k", "hmac-sha256", key_file(tmp_path, "not base64!")))
    with pytest.raises(ValueError, match="cannot read"):
        read_secret(TsigKey("k", "hmac-sha256", tmp_path / "missing"))


def test_engine_routes_notify_and_nothing_else(tmp_path: Path) -> None:
    # No client allowed: NOTIFY comes from primaries, which need not be clients.
    engine = Engine(Snapshot(CompiledPolicy.build([])), Cache(CacheSettings()), ClientAcl([]))
    data = notify_message().to_wire()
    reply = engine.handle(data, "192.0.2.53", 0, False)
    assert isinstance(reply, bytes) and reply[3] & 0xF == wire.REFUSED  # no zones: as before
    seen: list[tuple[bytes, str]] = []

    def on_notify(packet: bytes, client: str) -> bytes:
        seen.append((packet, client))
        return b"answer"

    engine.on_notify = on_notify
    assert engine.handle(data, "192.0.2.53", 0, False) == b"answer"
    assert seen == [(data, "192.0.2.53")]
    query = dns.message.make_query("example.com", "A").to_wire()
    reply = engine.handle(query, "192.0.2.53", 0, False)
    assert isinstance(reply, bytes) and reply[3] & 0xF == wire.REFUSED  # the ACL, as always
    assert len(seen) == 1


# --- the copy on disk ------------------------------------------------------------------


def test_write_atomically_replaces_the_file_through_a_temp_file_in_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "zone.db"
    target.write_text("old\n")
    target.chmod(0o640)
    synced: list[int] = []
    renamed: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        renamed.append((str(src), str(dst)))
        assert Path(src).read_text() == "new\n"  # complete before the rename
        assert len(synced) == 1  # and on disk
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomically(target, b"new\n")
    assert target.read_text() == "new\n"
    assert len(renamed) == 1 and Path(renamed[0][0]).parent == tmp_path
    assert renamed[0][1] == str(target)
    assert len(synced) == 2  # the file, then the directory
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the copy keeps its mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zone.db"]


def test_write_atomically_changes_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "zone.db"
    target.write_text("old\n")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", no_space)
        with pytest.raises(OSError):
            write_atomically(target, b"new, never complete\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zone.db"]

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError):
        write_atomically(target, b"new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zone.db"]


def test_new_copies_are_world_readable_and_directories_created(tmp_path: Path) -> None:
    target = tmp_path / "zones" / "rpz.db"
    write_atomically(target, b"x\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def records_of(tmp_path: Path, text: str, name: str = "hand.zone") -> Records:
    """A zone text read as the secondary reads a copy written elsewhere (by dnspython)."""
    path = tmp_path / name
    path.write_text(text)
    records = load_copy(ZoneConfig(ZONE, path, (PRIMARY,)))
    assert records is not None
    return records


def same(a: Records | None, b: Records | None) -> bool:
    assert a is not None and b is not None
    return (a.records, a.soa, a.soa_ttl) == (b.records, b.soa, b.soa_ttl)


def test_copy_written_and_read_back(tmp_path: Path) -> None:
    config = zone_config(tmp_path)
    zone = records_of(tmp_path, ZONE_TEXT.format(serial=42))
    write_copy(config, zone, PRIMARY, "axfr")
    lines = config.file.read_text().splitlines()
    assert lines[0].startswith("; sinkhole: rpz.example. serial 42, axfr from 192.0.2.53:53 at ")
    assert lines[1] == "$ORIGIN rpz.example."
    assert lines[2].startswith("rpz.example. 300 IN SOA ns.rpz.example. ")  # first: peekable
    assert "bad.test.rpz.example. 300 IN CNAME ." in lines  # absolute names
    copy = load_copy(config)
    assert same(copy, zone)
    assert copy is not None and len(copy) == 4
    soa = peek_soa(config)
    assert soa is not None and soa.serial == 42 and soa.expire == 86400
    assert load_copy(zone_config(tmp_path / "none")) is None
    config.file.write_text("$ORIGIN rpz.example.\nbad.test 300 IN CNAME .\n")
    with pytest.raises(ValueError, match="no SOA"):
        load_copy(config)
    assert peek_soa(config) is None


RICH_ZONE = r"""$ORIGIN rpz.example.
$TTL 300
@ IN SOA ns.rpz.example. hostmaster.rpz.example. 9 3600 600 86400 300
@ IN NS localhost.
Mixed.Case.test IN CNAME Target.Example.
*.wild.test 60 IN CNAME *.
local.test IN A 192.0.2.1
local.test IN A 192.0.2.2
local.test IN AAAA 2001:db8::1
local.test IN TXT "with spaces; and a semicolon" "second"
mail.test IN MX 10 mx.Example.
odd\(label\).test IN CNAME rpz-passthru.
odd\032space.test IN CNAME .
escaped\.dot.test IN CNAME rpz-drop.
"""


def test_every_record_kind_survives_a_round_trip(tmp_path: Path) -> None:
    config = zone_config(tmp_path)
    zone = records_of(tmp_path, RICH_ZONE)
    write_copy(config, zone, PRIMARY, "axfr")
    assert same(load_copy(config), zone)  # read back by splitting lines
    # What is written is a valid master file with the same records (names case-folded).
    written = config.file.read_text()
    original = dns.zone.from_text(RICH_ZONE.lower(), ZONE, relativize=False)
    reread = dns.zone.from_text(written, ZONE, relativize=False)
    assert reread == original
    assert "odd\\(label\\).test.rpz.example. 300 IN CNAME rpz-passthru." in written
    assert "mixed.case.test.rpz.example. 300 IN CNAME target.example." in written


def test_copies_compressed_as_their_name_says(tmp_path: Path) -> None:
    zone = records_of(tmp_path, ZONE_TEXT.format(serial=8))
    for name, magic in (("rpz.zone.gz", b"\x1f\x8b"), ("rpz.zone.xz", b"\xfd7zXZ")):
        config = ZoneConfig(ZONE, tmp_path / name, (PRIMARY,))
        write_copy(config, zone, PRIMARY, "ixfr")
        assert config.file.read_bytes().startswith(magic)
        assert same(load_copy(config), zone)
        soa = peek_soa(config)
        assert soa is not None and soa.serial == 8


_LABELS = st.lists(st.binary(min_size=1, max_size=63), min_size=0, max_size=4).filter(
    lambda labels: sum(len(label) + 1 for label in labels) < 255
)


@given(_LABELS)
def test_names_are_written_as_dnspython_writes_and_reads_them(labels: list[bytes]) -> None:
    """Copies are master files: a name with odd bytes (``;``, ``(``, ``"``, ``$``, ``@``,
    spaces, non-ASCII) is escaped as dnspython escapes it, and reads back the same."""
    name = b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"
    text = name_text(name)
    assert text == dns.name.from_wire(name.lower(), 0)[0].to_text()
    assert dns.name.from_text(text).to_wire() == name.lower()


def test_names_in_copies_escape_what_master_files_treat_specially() -> None:
    odd = b'\x07a"();@$\x07example\x00'
    assert wire.name_to_text(odd) == 'a\\"\\(\\)\\;\\@\\$.example'
    assert name_text(odd) == 'a\\"\\(\\)\\;\\@\\$.example.'


def test_names_and_rdata_from_the_wire() -> None:
    assert name_text(wire.text_to_name("A.B.Example")) == "a.b.example."
    assert name_text(b"\x00") == "."
    assert name_text(b"\x03a;b\x01*\x00") == "a\\;b.*."
    assert name_text(b"\x03a b\x00") == "a\\032b."
    message = dns.message.make_response(dns.message.make_query("x.rpz.example.", "A"))
    for text in (
        "x.rpz.example. 1 IN CNAME Other.rpz.example.",
        "x.rpz.example. 1 IN AAAA ::1",
        "x.rpz.example. 1 IN MX 5 x.rpz.example.",
        'x.rpz.example. 1 IN TXT "a b"',
    ):
        message.answer.append(dns.rrset.from_text(*text.split(None, 4)))
    data = message.to_wire()  # names compressed against the question
    received, tsig = read_message(data, message.id)
    assert tsig is None
    assert [(r[0], r[1], r[3]) for r in received] == [
        ("x.rpz.example.", 5, "other.rpz.example."),
        ("x.rpz.example.", 28, "::1"),
        ("x.rpz.example.", 15, "5 x.rpz.example."),
        ("x.rpz.example.", 16, '"a b"'),
    ]
    with pytest.raises(FormError):
        read_message(data, message.id ^ 1)  # not our query
    with pytest.raises(FormError):
        read_message(data[:-3], message.id)


def soa_rec(serial: int) -> Any:
    soa = Soa.parse(f"ns.{ZONE} h.{ZONE} {serial} 3600 600 86400 300")
    return (ZONE, 6, 300, soa.text, soa)


def cname(owner: str) -> Any:
    return (f"{owner}.{ZONE}", 5, 300, ".", None)


def test_incoming_axfr_and_ixfr_sequences() -> None:
    axfr = Incoming(ZONE, None)
    axfr.feed([soa_rec(3), cname("a"), ("glue.elsewhere.", 1, 300, "192.0.2.1", None)])
    assert not axfr.done
    axfr.feed([soa_rec(3)])
    assert axfr.done and axfr.full is not None
    assert list(axfr.full.records) == [(f"a.{ZONE}", 5, ".")]  # out-of-zone glue dropped

    base = Records(ZONE)
    base.soa, base.soa_ttl = soa_rec(1)[4], 300
    base.records = {(f"a.{ZONE}", 5, "."): 300, (f"b.{ZONE}", 5, "."): 300}
    two_steps = [
        soa_rec(3),
        soa_rec(1),
        cname("a"),
        soa_rec(2),
        cname("c"),
        soa_rec(2),
        cname("c"),
        soa_rec(3),
        cname("d"),
        soa_rec(3),
    ]
    ixfr = Incoming(ZONE, 1)
    ixfr.feed(two_steps)
    assert ixfr.done and ixfr.full is None
    ixfr.apply(base)
    assert set(base.records) == {(f"b.{ZONE}", 5, "."), (f"d.{ZONE}", 5, ".")}
    assert base.soa is not None and base.soa.serial == 3

    current = Incoming(ZONE, 3)
    current.feed([soa_rec(3)])
    assert current.done and current.up_to_date

    as_axfr = Incoming(ZONE, 1)  # an IXFR answered with the whole zone
    as_axfr.feed([soa_rec(4), cname("z"), soa_rec(4)])
    assert as_axfr.done and as_axfr.full is not None and len(as_axfr.full) == 2


@pytest.mark.parametrize(
    ("ours", "records", "error"),
    [
        (None, [cname("a")], "does not begin"),
        (1, [soa_rec(3), soa_rec(2), cname("a")], "base serial"),
        (None, [soa_rec(3), cname("a"), soa_rec(2)], "middle"),
        (None, [soa_rec(3), soa_rec(3), cname("a")], "after the final"),
        (1, [soa_rec(3), soa_rec(1), soa_rec(2), soa_rec(5), cname("x")], "out of sequence"),
    ],
)
def test_incoming_rejects_broken_sequences(ours: int | None, records: Any, error: str) -> None:
    with pytest.raises(BrokenTransfer, match=error):
        Incoming(ZONE, ours).feed(records)


def test_ixfr_deleting_a_missing_record_changes_nothing() -> None:
    base = Records(ZONE)
    base.soa, base.soa_ttl = soa_rec(1)[4], 300
    base.records = {(f"a.{ZONE}", 5, "."): 300}
    before = dict(base.records)
    ixfr = Incoming(ZONE, 1)
    ixfr.feed(
        [soa_rec(2), soa_rec(1), cname("a"), cname("missing"), soa_rec(2), cname("n"), soa_rec(2)]
    )
    with pytest.raises(BrokenTransfer, match="do not have"):
        ixfr.apply(base)
    assert base.records == before and base.soa is not None and base.soa.serial == 1


def test_peek_reads_a_hand_written_copy_too(tmp_path: Path) -> None:
    config = zone_config(tmp_path)
    config.file.write_text(ZONE_TEXT.format(serial=77))  # relative names, $TTL
    soa = peek_soa(config)
    assert soa is not None and soa.serial == 77
    config.file.write_text(
        "$ORIGIN rpz.example.\n@ IN SOA ns h ( 5 3600 600\n 86400 300 )\n"
    )  # on several lines: not peeked, read whole when needed
    assert peek_soa(config) is None


# --- timers, with a fake clock ------------------------------------------------------------------


TIMERS = Timers(refresh=3600, retry=600, expire=86400)


def test_first_check_is_at_once_then_on_refresh() -> None:
    clock = ZoneClock(None, None, now=1000.0)
    assert clock.check_due(1000.0) and clock.wake_at() == 1000.0
    clock.succeeded(1000.0, TIMERS)
    assert not clock.check_due(1000.0 + 3599)
    assert clock.check_due(1000.0 + 3600)
    assert clock.wake_at() == 1000.0 + 3600
    assert clock.expires_at() == 1000.0 + 86400


def test_failure_retries_after_soa_retry_or_the_no_copy_interval() -> None:
    clock = ZoneClock(None, None, now=0.0)
    clock.failed(5.0)
    assert clock.next_check == 5.0 + NO_COPY_RETRY and clock.failures == 1
    assert clock.poll_expiry(10_000_000.0) is None  # no copy: nothing to expire
    clock = ZoneClock(TIMERS, confirmed=0.0, now=0.0)
    clock.failed(100.0)
    assert clock.next_check == 100.0 + 600
    clock.succeeded(200.0, TIMERS)
    assert clock.failures == 0 and clock.next_check == 200.0 + 3600


def test_expiry_is_announced_once_then_reminded_periodically() -> None:
    clock = ZoneClock(TIMERS, confirmed=0.0, now=0.0, reminder=600.0)
    assert clock.wake_at() == 0.0  # the first check
    clock.failed(0.0)
    assert clock.wake_at() == 600.0  # retry before the expiry
    assert clock.poll_expiry(86399.0) is None
    assert clock.poll_expiry(86400.0) == "expired"
    assert clock.expired
    assert clock.poll_expiry(86400.0 + 599) is None
    assert clock.poll_expiry(86400.0 + 600) == "reminder"
    assert clock.poll_expiry(86400.0 + 700) is None
    assert clock.poll_expiry(86400.0 + 1200) == "reminder"
    clock.next_check = 10**9
    assert clock.wake_at() == 86400.0 + 1800  # wakes for the next reminder
    assert clock.succeeded(90000.0, TIMERS) is True  # was expired
    assert not clock.expired and clock.poll_expiry(90001.0) is None
    assert clock.succeeded(90002.0, TIMERS) is False


def test_expiry_counts_from_the_saved_copy_date() -> None:
    # Started with a copy last confirmed a day and a half ago, expire one day: expired at once.
    now = 200_000.0
    clock = ZoneClock(TIMERS, confirmed=now - 1.5 * 86400, now=now)
    assert clock.poll_expiry(now) == "expired"


def test_soa_timers_are_clamped() -> None:
    soa = dns.rdata.from_text("IN", "SOA", "ns. h. 1 0 1 0 0")
    timers = Timers.of(soa)  # type: ignore[arg-type]
    assert timers.refresh == MIN_INTERVAL and timers.retry == MIN_INTERVAL
    assert timers.expire == MIN_INTERVAL
    soa = dns.rdata.from_text("IN", "SOA", "ns. h. 1 4294967295 4294967295 4294967295 0")
    timers = Timers.of(soa)  # type: ignore[arg-type]
    assert timers.refresh == MAX_INTERVAL and timers.expire == 4294967295


# --- the follower's synchronous parts, and the NOTIFY listener -------------------------


class Log:
    """A structlog-like logger that keeps (level, event, fields)."""

    def __init__(self, records: list[tuple[str, str, dict[str, Any]]] | None = None) -> None:
        self.records = records if records is not None else []
        self.fields: dict[str, Any] = {}

    def bind(self, **fields: Any) -> Log:
        child = Log(self.records)
        child.fields = {**self.fields, **fields}
        return child

    def _log(self, level: str, event: str, **fields: Any) -> None:
        self.records.append((level, event, {**self.fields, **fields}))

    def debug(self, event: str, **fields: Any) -> None:
        self._log("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, **fields)

    def events(self) -> list[str]:
        return [event for _, event, _ in self.records]


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_expired_copy_with_drop_is_moved_aside_before_the_first_policy(tmp_path: Path) -> None:
    log, changes = Log(), []
    config = zone_config(tmp_path, on_expire="drop")
    config.file.write_text(ZONE_TEXT.format(serial=4))  # expire: 86400 s
    os.utime(config.file, (1000.0, 1000.0))
    follower = ZoneFollower(config, lambda: changes.append(1), log, FakeClock(1000.0 + 86401))
    follower.prepare()
    assert not config.file.exists()
    aside = config.file.with_name(config.file.name + ".expired")
    assert aside.read_text() == ZONE_TEXT.format(serial=4)
    assert ("error", "zone_expired") in [(lv, e) for lv, e, _ in log.records]
    assert "zone_dropped" in log.events() and changes == [1]
    assert follower.copy is None and follower.serial is None


def test_refused_notifies_are_logged_at_a_bounded_rate(tmp_path: Path) -> None:
    log, forwarded = Log(), []
    listener = NotifyListener(
        [zone_config(tmp_path)], lambda zone, client: forwarded.append((zone, client)), log
    )
    clock = FakeClock(100.0)
    listener.clock = clock
    data = notify_message().to_wire()
    for _ in range(REFUSED_LOG_BURST + 5):
        reply = listener(data, "198.51.100.1")  # not a primary: every one is answered
        assert reply is not None and reply[3] & 0xF == dns.rcode.REFUSED
    assert log.events().count("notify_refused") == REFUSED_LOG_BURST
    clock.now += REFUSED_LOG_WINDOW
    listener(data, "198.51.100.1")
    last = log.records[-1][2]
    assert last["not_logged_before"] == 5 and last["reason"] == "not a primary of the zone"
    assert listener(data, "192.0.2.53") is not None  # a primary: always logged, passed on
    assert forwarded == [(ZONE, "192.0.2.53")]
    assert log.events()[-1] == "notify_received"


def test_prepare_removes_temp_files_left_by_a_stop(tmp_path: Path) -> None:
    config = zone_config(tmp_path)
    config.file.write_text(ZONE_TEXT.format(serial=1))
    stale = tmp_path / f".{config.file.name}.abc123.tmp"
    stale.write_text("half a zone")
    other = tmp_path / ".other.zone.abc.tmp"
    other.write_text("not ours")
    ZoneFollower(config, lambda: None, Log(), FakeClock()).prepare()
    assert not stale.exists() and other.exists() and config.file.exists()
