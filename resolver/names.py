"""Domain names as people write them in policies: checked, normalised, turned into wire form.

Errors are ValueError with a message that says what is wrong and how to fix it.
"""

from __future__ import annotations

import ipaddress
import re

import idna

from resolver.policy import Scope

_ASCII_NAME = re.compile(
    r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$"
)


def to_wire(name: str) -> bytes:
    """Wire form of a checked, lower-case ASCII name (no trailing dot)."""
    return (
        b"".join(bytes((len(label),)) + label.encode("ascii") for label in name.split("."))
        + b"\x00"
    )


def normalise(text: str) -> str:
    """Check a name and return it lower-case, without trailing dot, Unicode as punycode."""
    name = text.strip()
    if not name:
        raise ValueError("empty name")
    if "://" in name or "/" in name:
        host = name.split("://", 1)[-1].split("/", 1)[0]
        raise ValueError(
            f"{text!r} is a URL or a path; DNS can only block whole names: write {host!r} "
            "(which blocks every page of that site)"
        )
    if name.endswith("."):
        name = name[:-1]
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"{text!r} is an IP address; a policy entry must be a domain name")
    if ":" in name:
        host = name.rsplit(":", 1)[0]
        raise ValueError(f"{text!r} has a port; DNS blocks names, not ports: write {host!r}")
    if " " in name or "\t" in name:
        raise ValueError(f"{text!r} contains a space; write one name per entry")
    name = name.lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"{text!r} is not a valid internationalised name ({exc})") from None
    if len(name) > 253:
        raise ValueError(f"{text!r} is longer than 253 characters, the limit for a DNS name")
    if not _ASCII_NAME.match(name):
        raise ValueError(
            f"{text!r} is not a valid domain name: use letters, digits and hyphens, "
            "labels of 1 to 63 characters separated by single dots"
        )
    return name


def parse_entry(text: str) -> tuple[str, Scope]:
    """A policy entry: ``name`` (it and every name under it), ``=name`` (it alone),
    ``*.name`` (only names under it). Returns the normalised name and the scope."""
    text = str(text).strip()
    if text.startswith("="):
        return normalise(text[1:]), Scope.EXACT
    if text.startswith("*."):
        return normalise(text[2:]), Scope.BELOW
    if "*" in text:
        raise ValueError(
            f"{text!r}: a wildcard may only stand alone at the start, as in '*.example.com'"
        )
    return normalise(text), Scope.SUBTREE
