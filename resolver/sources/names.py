"""Domain names as people write them in policies: checked, normalised, turned into wire form.

Errors are ValueError with a message that says what is wrong and how to fix it.
Also here: the public-suffix check (``com``, ``co.kr``, ``github.io``), from the
Public Suffix List that the ``publicsuffixlist`` package ships, private section
included.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass

import idna
from publicsuffixlist import PSLFILE

from resolver.core.errors import quote
from resolver.core.matcher import Scope

_ASCII_NAME = re.compile(
    r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$"
)
_NUMERIC = re.compile(r"^[0-9]+$")
# Longer text is no name, whatever its form (Unicode, a URL): refused before any parsing.
MAX_TEXT = 1024


def _too_long(text: str) -> str:
    return (
        f"{quote(text)} is longer than 253 characters, the limit for a DNS name; "
        "check that it is one name"
    )


def normalise(text: str) -> str:
    """Check a name and return it lower-case, without trailing dot, Unicode as punycode."""
    name = text.strip()
    if not name:
        raise ValueError("empty name: write a domain name such as example.com")
    if "://" in name or "/" in name:
        host = name.split("://", 1)[-1].split("/", 1)[0]
        raise ValueError(
            f"{quote(text)} is a URL or a path; DNS can only block whole names: "
            f"write {quote(host)} (which blocks every page of that site)"
        )
    if len(name) > MAX_TEXT:
        raise ValueError(_too_long(text))
    if name.endswith("."):
        name = name[:-1]
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(
            f"{quote(text)} is an IP address; a policy entry must be a domain name, "
            "such as example.com"
        )
    if ":" in name:
        host = name.rsplit(":", 1)[0]
        raise ValueError(
            f"{quote(text)} has a port; DNS blocks names, not ports: write {quote(host)}"
        )
    if " " in name or "\t" in name:
        raise ValueError(f"{quote(text)} contains a space; write one name per entry")
    name = name.lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(
                f"{quote(text)} is not a valid internationalised name ({exc}); "
                "check the spelling, or write its xn-- form"
            ) from None
    if len(name) > 253:
        raise ValueError(_too_long(text))
    if not _ASCII_NAME.match(name):
        raise ValueError(
            f"{quote(text)} is not a valid domain name: use letters, digits and hyphens, "
            "labels of 1 to 63 characters separated by single dots"
        )
    if _NUMERIC.match(name.rsplit(".", 1)[-1]):
        raise ValueError(
            f"{quote(text)} is not a domain name: its last label is a number (an IP address?); "
            "write the site's name, such as example.com"
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
            f"{quote(text)}: a wildcard may only stand alone at the start, as in '*.example.com'"
        )
    return normalise(text), Scope.SUBTREE


def covers(name: str, scope: Scope, qname: str) -> bool:
    """Whether an entry for ``name`` with ``scope`` covers the name ``qname`` (both
    normalised)."""
    if qname == name:
        return scope is not Scope.BELOW
    return scope is not Scope.EXACT and qname.endswith("." + name)


# --- public suffixes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicSuffixes:
    """The Public Suffix List as three sets of normalised names.

    A name is a public suffix when it is a single label (an unknown top-level
    domain counts), when it is listed (or is the root of a ``*.`` rule), or when
    its parent has a ``*.`` rule and it is not an exception (``!www.ck``).
    """

    listed: frozenset[str]
    wildcard: frozenset[str]  # P for every rule *.P
    exceptions: frozenset[str]  # N for every rule !N

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if "." not in name or name in self.listed:
            return True
        if name in self.exceptions:
            return False
        return name.partition(".")[2] in self.wildcard


def _ascii_forms(rule: str) -> set[str]:
    """The rule as written and its xn-- forms (IDNA 2003 and 2008 may differ)."""
    forms = {rule}
    if not rule.isascii():
        for encode in (
            lambda r: r.encode("idna").decode("ascii"),
            lambda r: idna.encode(r, uts46=True).decode("ascii"),
        ):
            try:
                forms.add(encode(rule))
            except (UnicodeError, idna.IDNAError):
                pass
    return forms


@functools.cache
def public_suffixes() -> PublicSuffixes:
    """The Public Suffix List shipped with the ``publicsuffixlist`` package (read once)."""
    listed: set[str] = set()
    wildcard: set[str] = set()
    exceptions: set[str] = set()
    with open(PSLFILE, encoding="utf-8") as f:
        for line in f:
            rule = line.strip().split(" ", 1)[0].lower()
            if not rule or rule.startswith("//"):
                continue
            if rule.startswith("!"):
                exceptions.update(_ascii_forms(rule[1:]))
            elif rule.startswith("*."):
                forms = _ascii_forms(rule[2:])
                wildcard.update(forms)
                listed.update(forms)  # the root of a wildcard rule is public too
            else:
                listed.update(_ascii_forms(rule))
    return PublicSuffixes(frozenset(listed), frozenset(wildcard), frozenset(exceptions))


def is_public_suffix(name: str) -> bool:
    """Whether a normalised name is a public suffix (``com``, ``co.kr``, ``github.io``)."""
    return name in public_suffixes()
