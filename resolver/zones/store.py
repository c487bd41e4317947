"""The saved copy of a followed zone: written atomically, read back whole or just its SOA.

A copy is a master file (``.gz`` and ``.xz`` compressed as its name says), written here
with a header line, absolute names and one record a line, SOA first. It is replaced all
or nothing (temporary file, fsync, rename, directory fsync). Copies written elsewhere
are read too, by dnspython (slower).
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.zone

from resolver.core.endpoint import Endpoint
from resolver.sources.config_sections import ZoneConfig
from resolver.zones.errors import CopyError
from resolver.zones.records import Records, Soa, rdata_text, soa_from_wire, type_code

HEADER_MARK = "; sinkhole: "  # the first line of every copy written here


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, all or nothing: a temporary file in the same
    directory, written and fsynced, renamed over ``path``, then the directory fsynced.
    On any error ``path`` is unchanged and the temporary file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read(path: Path, limit: int = -1) -> str:
    """A zone file's text (``.gz`` and ``.xz`` decompressed, as the RPZ loader reads them);
    with ``limit``, at most about that many characters from its start."""
    opener: Callable[[Path, str], Any] = open
    if path.suffix == ".gz":
        opener = gzip.open
    elif path.suffix == ".xz":
        opener = lzma.open
    with opener(path, "rb") as raw:
        data: bytes = raw.read(limit)
    return data.decode("utf-8", "replace" if limit >= 0 else "strict")


def load_copy(config: ZoneConfig) -> Records | None:
    """The saved copy, read whole (the base an IXFR is applied to), or None when there is
    none. Raises on a copy that cannot be read. Copies written here are split into
    fields directly; any other zone file is read by dnspython (slower)."""
    if not config.file.exists():
        return None
    text = _read(config.file)
    if text.startswith(HEADER_MARK):
        return _load_own(config, text)
    zone = dns.zone.from_text(
        text,
        origin=config.name,
        relativize=False,
        allow_include=False,
        check_origin=False,
        filename=str(config.file),
    )
    records = Records(config.name)
    for name, node in zone.nodes.items():
        owner = name.to_text().lower()
        for rdataset in node.rdatasets:
            for rdata in rdataset:
                raw = rdata.to_wire() or b""
                if rdataset.rdtype == dns.rdatatype.SOA and owner == config.name:
                    records.soa = soa_from_wire(raw, 0, len(raw))
                    records.soa_ttl = rdataset.ttl
                    continue
                key = (owner, int(rdataset.rdtype), rdata_text(rdataset.rdtype, raw, 0, len(raw)))
                records.records[key] = rdataset.ttl
    if records.soa is None:
        raise CopyError("the copy has no SOA record at the zone's origin")
    return records


def _load_own(config: ZoneConfig, text: str) -> Records:
    records = Records(config.name)
    store = records.records
    code = type_code
    for number, line in enumerate(text.splitlines()[1:], start=2):
        if not line or line.startswith("$ORIGIN"):
            continue
        fields = line.split(None, 4)
        if len(fields) != 5 or fields[2] != "IN":
            raise CopyError(f"{config.file}:{number}: not a record line written here")
        owner, ttl, _, kind, rdata = fields
        if kind == "SOA" and owner == config.name:
            records.soa = Soa.parse(rdata)
            records.soa_ttl = int(ttl)
        else:
            store[(owner, code(kind), rdata)] = int(ttl)
    if records.soa is None:
        raise CopyError("the copy has no SOA record at the zone's origin")
    return records


def peek_soa(config: ZoneConfig) -> Soa | None:
    """The saved copy's SOA from the head of the file, without reading it whole: copies
    written here have it on one line at the top. None when it is not found there."""
    try:
        head = _read(config.file, 65536)
    except (OSError, EOFError, lzma.LZMAError, gzip.BadGzipFile):
        return None
    origin = dns.name.from_text(config.name)
    for line in head.splitlines()[:50]:
        fields = line.split(";", 1)[0].split()
        if "SOA" not in fields[:4] or "(" in fields:
            continue
        at = fields.index("SOA")
        try:
            if dns.name.from_text(fields[0], origin) != origin:
                return None
            return Soa.parse(" ".join(fields[at + 1 :]))
        except (dns.exception.DNSException, ValueError):
            return None
    return None


def write_copy(config: ZoneConfig, records: Records, primary: Endpoint, kind: str) -> None:
    assert records.soa is not None
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = (
        f"{HEADER_MARK}{config.name} serial {records.soa.serial}, {kind} from {primary} "
        f"at {stamp}\n"
    )
    data = records.text(header).encode("utf-8")
    if config.file.suffix == ".gz":
        data = gzip.compress(data, 6)
    elif config.file.suffix == ".xz":
        data = lzma.compress(data)
    write_atomically(config.file, data)
