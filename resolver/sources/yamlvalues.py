"""Values people write in the configuration and in policy files, each read by one set of rules.

Text as written, actions, dates, IP addresses, networks, redirect targets and the
warning page: every reader takes the Doc and the node, and fails with a message
that names the key and says how to fix it (the Doc adds file:line:col).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import yaml

from resolver.core.errors import quote
from resolver.core.verdict import Action, Answers, Network, Redirect
from resolver.sources.names import normalise
from resolver.sources.yamlsource import Doc, describe

Keys = dict[str, tuple[yaml.Node, yaml.Node]]

MAX_TTL = 2**31 - 1
DEFAULT_TTL = 60
WARNING_PAGE_KEYS = frozenset({"ipv4", "ipv6", "ttl"})
REDIRECT_KEYS = frozenset({"ipv4", "ipv6", "cname"})
REDIRECT_EXAMPLE = "redirect: {cname: warning.example} or redirect: {ipv4: [192.0.2.1]}"

# A language tag as in Accept-Language (BCP 47, simplified): ko, en, en-GB, zh-Hant.
LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(-[a-z0-9]{1,8})*")
DEFAULT_LANGUAGE = "en"
URL_TEXT = re.compile(r"[!#-;=?-\[\]_a-z~]+", re.I)  # printable ASCII less space " < > \ ^ ` { | }

BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"


def is_null(node: yaml.Node) -> bool:
    """Whether the node is YAML's empty value (nothing after the colon, or ``null``)."""
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG


def read_text(doc: Doc, node: yaml.Node, what: str, required: bool = False) -> str:
    """Text as written: a number or a date stays exactly as in the file; yes/no is an error."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == BOOL_TAG:
            doc.fail(
                node,
                f"{what} must be text, but YAML reads {node.value} as a yes/no value: "
                f"put it in quotes, like '{node.value}'",
            )
        if node.tag == NULL_TAG:
            if required:
                doc.fail(node, f"{what} is empty: write a value or remove the line")
            return ""
        return str(node.value)
    kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
    doc.fail(node, f"{what} must be text, not {kind}")


def read_translated(
    doc: Doc, node: yaml.Node, what: str
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Text, or the same text in several languages (``{ko: ..., en: ...}``): the default text
    (English when given, else the first) and every (language tag, text), tags lower-cased."""
    if not isinstance(node, yaml.MappingNode):
        return read_text(doc, node, what).strip(), ()
    fields = doc.mapping(node, what)
    if not fields:
        doc.fail(
            node, f"{what} is empty: write the text, or one text per language like {{en: ...}}"
        )
    texts: list[tuple[str, str]] = []
    for tag, (key_node, value_node) in fields.items():
        language = tag.strip().lower()
        if not LANGUAGE_TAG.fullmatch(language):
            doc.fail(
                key_node,
                f"{what}: {quote(tag)} is not a language tag; write one like ko, en or en-GB",
            )
        if any(language == seen for seen, _ in texts):
            doc.fail(key_node, f"{what}: language {quote(language)} is given twice")
        texts.append((language, read_text(doc, value_node, f"{what}.{tag}", required=True).strip()))
    default = dict(texts).get(DEFAULT_LANGUAGE, texts[0][1])
    return default, tuple(texts)


def read_url(doc: Doc, node: yaml.Node, what: str) -> str:
    """A web address (http or https, with a host), in ASCII: it is sent in HTTP headers."""
    text = read_text(doc, node, what, required=True).strip()
    example = "https://www.kcsc.or.kr/"
    if not URL_TEXT.fullmatch(text):
        doc.fail(
            node,
            f"{what}: {quote(text)} has characters a web address cannot hold (spaces, quotes, "
            f"<, > or letters outside ASCII); write it like {example}, with non-ASCII names "
            "in their xn-- form and other characters %-encoded",
        )
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        doc.fail(node, f"{what}: {quote(text)} is not a web address; write one like {example}")
    return text


def read_action(doc: Doc, node: yaml.Node, allowed: tuple[str, ...]) -> Action:
    label = read_text(doc, node, "action", required=True).strip().lower()
    if label not in allowed:
        doc.fail(node, f"action must be one of {', '.join(allowed)}, not {quote(label)}")
    return Action.from_label(label)


def read_moment(doc: Doc, keys: Keys, what: str) -> datetime | None:
    """A date (midnight UTC) or a date and time with a zone, as a timezone-aware datetime."""
    if what not in keys:
        return None
    node = keys[what][1]
    example = "2026-01-01 (midnight UTC) or 2026-01-01T09:00:00+09:00"
    value: Any = doc.value(node)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            doc.fail(node, f"{what}: {quote(value)} is not a date; write it as {example}")
        if value.tzinfo is None and len(node.value.strip()) == 10:
            value = value.date()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            doc.fail(
                node,
                f"{what}: {node.value} has no time zone; add one, like {node.value}+09:00 "
                f"or {node.value}Z for UTC",
            )
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    doc.fail(node, f"{what} must be a date, such as {example}, not {describe(value)}")


def read_addresses(doc: Doc, fields: Keys, key: str, what: str) -> list[Any]:
    """The addresses under ``ipv4`` or ``ipv6`` (one, or a list), each of that version."""
    version = 4 if key == "ipv4" else 6
    example = "192.0.2.1" if version == 4 else "2001:db8::1"
    out = []
    if key in fields:
        for item in doc.sequence(fields[key][1], f"{what}.{key}"):
            text = read_text(doc, item, f"{what}.{key}", required=True).strip()
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                doc.fail(
                    item,
                    f"{what}.{key}: {quote(text)} is not an IP address; write one like {example}",
                )
            if address.version != version:
                doc.fail(
                    item,
                    f"{what}.{key}: {quote(text)} is an IPv{address.version} address; "
                    f"put it under {'ipv4' if address.version == 4 else 'ipv6'}",
                )
            out.append(address)
    return out


def read_warning_page(
    doc: Doc, node: yaml.Node, ttl: int | None = None
) -> tuple[Answers, int | None]:
    """``warning_page: {ipv4: [...], ipv6: [...], ttl: N}``, with at least one address: the
    answers, and the page's own TTL (None when it gives none).

    ``ttl`` is a TTL the file gives elsewhere (a policy's ``ttl:``), which the page's own
    must agree with. The answers' TTL: the page's own, else ``ttl``, else 60.
    """
    if not isinstance(node, yaml.MappingNode):
        doc.fail(
            node, "warning_page must list its addresses, like warning_page: {ipv4: [192.0.2.80]}"
        )
    fields = doc.mapping(node, "warning_page")
    doc.reject_unknown(fields, WARNING_PAGE_KEYS, "warning_page")
    own = None
    if "ttl" in fields:
        own = doc.integer(fields["ttl"][1], "warning_page.ttl", 0, MAX_TTL)
        if ttl is not None and own != ttl:
            doc.fail(
                fields["ttl"][1],
                f"warning_page.ttl ({own}) and ttl ({ttl}) disagree; keep one of them",
            )
    ipv4 = read_addresses(doc, fields, "ipv4", "warning_page")
    ipv6 = read_addresses(doc, fields, "ipv6", "warning_page")
    if not ipv4 and not ipv6:
        doc.fail(
            node,
            "warning_page has no address: add ipv4: [...] and/or ipv6: [...], "
            "or remove it to use the default warning page",
        )
    chosen = own if own is not None else ttl if ttl is not None else DEFAULT_TTL
    return Answers(tuple(ipv4), tuple(ipv6), chosen), own


def read_redirect(doc: Doc, node: yaml.Node, what: str) -> Redirect:
    """A redirect target: addresses (``ipv4``, ``ipv6``) or a ``cname``, not both."""
    if not isinstance(node, yaml.MappingNode):
        doc.fail(node, f"{what} must give its target, like {REDIRECT_EXAMPLE}")
    fields = doc.mapping(node, what)
    doc.reject_unknown(fields, REDIRECT_KEYS, what)
    ipv4 = read_addresses(doc, fields, "ipv4", what)
    ipv6 = read_addresses(doc, fields, "ipv6", what)
    cname = ""
    if "cname" in fields:
        cname_node = fields["cname"][1]
        raw = read_text(doc, cname_node, f"{what}.cname", required=True)
        try:
            cname = normalise(raw)
        except ValueError as exc:
            doc.fail(cname_node, f"{what}.cname: {exc}")
        if ipv4 or ipv6:
            doc.fail(
                cname_node,
                f"{what} takes addresses (ipv4, ipv6) or a cname, not both; keep one of them",
            )
    if not (ipv4 or ipv6 or cname):
        doc.fail(node, f"{what} has no target: add a cname or addresses, like {REDIRECT_EXAMPLE}")
    return Redirect(tuple(ipv4), tuple(ipv6), cname)


def read_networks(doc: Doc, keys: Keys, key: str) -> tuple[Network, ...]:
    """The networks under ``key`` (one, or a list), with no bits set after the prefix."""
    if key not in keys:
        return ()
    node = keys[key][1]
    items = doc.sequence(node, key)
    if not items:
        doc.fail(node, f"{key} is empty: list networks like 192.0.2.0/24, or remove the line")
    out = []
    for item in items:
        text = read_text(doc, item, f"an entry of {key}", required=True).strip()
        try:
            out.append(ipaddress.ip_network(text))
        except ValueError:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                doc.fail(
                    item,
                    f"{key}: {quote(text)} is not a network; write an address with a prefix "
                    "length, like 192.0.2.0/24 or 2001:db8::/32",
                )
            doc.fail(
                item,
                f"{key}: {quote(text)} has bits set after the prefix length; "
                f"write the network as {quote(str(network))}",
            )
    return tuple(out)
