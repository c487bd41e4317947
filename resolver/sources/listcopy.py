"""The saved copies of lists fetched from where they are published (``url:``).

A list a policy names by its address is read from its last good copy, kept in the
state directory as ``lists/<host>-<digest>.list`` (``.gz``, ``.xz`` or ``.bz2`` when
the address ends so, so it is decompressed as it is read). Beside each copy a small
JSON file remembers the fetch that wrote or confirmed it: the body's sha256, the
server's ETag and Last-Modified (for conditional requests), and when it was fetched.

The state directory is ``state_dir:`` in the configuration when set, else
``$STATE_DIRECTORY`` under systemd (``StateDirectory=sinkhole``),
``/var/lib/sinkhole`` when this user may write there, else ``$XDG_STATE_HOME/sinkhole``
(``~/.local/state/sinkhole``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

SYSTEM_STATE_DIR = Path("/var/lib/sinkhole")
COMPRESSED = (".gz", ".xz", ".bz2")
META_SUFFIX = ".json"
DIGEST_CHARS = 16  # of the URL's sha256, in the copy's name


def _writable(path: Path) -> bool:
    """Whether this user may write in ``path``, or create it (its parent is writable)."""
    if path.exists():
        return os.access(path, os.W_OK | os.X_OK)
    parent = path.parent
    return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)


def default_state_dir(
    env: Mapping[str, str] | None = None, system: Path = SYSTEM_STATE_DIR
) -> Path:
    """Where the copies go when the configuration has no ``state_dir:``."""
    env = os.environ if env is None else env
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd)
    if _writable(system):
        return system
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg:
        return Path(xdg) / "sinkhole"
    home = env.get("HOME", "") or str(Path.home())
    return Path(home) / ".local" / "state" / "sinkhole"


def copy_path(state_dir: Path, url: str) -> Path:
    """The copy of the list at ``url``: its host and a digest of the whole address, so two
    lists never share a copy and the directory still says whose copy is whose."""
    parts = urlsplit(url)
    host = (parts.hostname or "list").strip(".") or "list"
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in host)[:64]
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    suffix = next((s for s in COMPRESSED if parts.path.lower().endswith(s)), ".list")
    return state_dir / "lists" / f"{safe}-{digest}{suffix}"


def meta_path(copy: Path) -> Path:
    return copy.with_name(copy.name + META_SUFFIX)


@dataclass(frozen=True, slots=True)
class Fetched:
    """What is known of the fetch that wrote (or last confirmed) a copy."""

    url: str
    sha256: str  # of the body as saved
    size: int
    fetched_at: float  # seconds since the epoch: the last successful fetch
    etag: str = ""
    last_modified: str = ""

    def confirmed(self, at: float) -> Fetched:
        """The same copy, confirmed at ``at`` (the server said it has nothing newer)."""
        return Fetched(self.url, self.sha256, self.size, at, self.etag, self.last_modified)


def meta_bytes(meta: Fetched) -> bytes:
    return json.dumps(asdict(meta), indent=1).encode("utf-8") + b"\n"


def read_meta(copy: Path, url: str) -> Fetched | None:
    """The record beside ``copy``, or None when there is none, it cannot be read, or it is
    of another address (the copy is then fetched again, unconditionally)."""
    try:
        data = json.loads(meta_path(copy).read_text(encoding="utf-8"))
        meta = Fetched(
            url=str(data["url"]),
            sha256=str(data["sha256"]),
            size=int(data["size"]),
            fetched_at=float(data["fetched_at"]),
            etag=str(data.get("etag", "")),
            last_modified=str(data.get("last_modified", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if meta.url == url else None


def conditional_headers(meta: Fetched | None, pin: str | None = None) -> dict[str, str]:
    """The request headers that let the server answer 304 Not Modified: only when the copy's
    record is known and (with a sha256 pin) the copy is the pinned one. Only validators
    the server gave are sent back: a date of our own clock could hide a change."""
    if meta is None or (pin is not None and meta.sha256 != pin):
        return {}
    headers = {}
    if meta.etag:
        headers["If-None-Match"] = meta.etag
    if meta.last_modified:
        headers["If-Modified-Since"] = meta.last_modified
    return headers


def digest_of(path: Path, block: int = 1 << 20) -> str | None:
    """The sha256 of a file's bytes, or None when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(block):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
