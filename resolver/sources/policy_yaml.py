"""Policy files written by regulators: YAML in, checked entries out, every error with file:line.

A policy file is strict: one bad entry fails the whole file, with a message that
says how to fix it. Lists a policy references (``lists:``) are third-party data and
read leniently by resolver.lists.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml

from resolver.core.errors import PolicyError, quote
from resolver.core.policy import (
    ACTION_LABELS,
    EDE_CODES,
    EVERYONE,
    Action,
    Answers,
    ClientScope,
    Network,
    PolicyInfo,
    Redirect,
    Scope,
)
from resolver.sources import files
from resolver.sources.lists import FORMATS, csv_header, find_column
from resolver.sources.names import is_public_suffix, normalise, parse_entry
from resolver.sources.yamlsource import Doc, describe

POLICY_KEYS = frozenset(
    {
        "id",
        "title",
        "authority",
        "legal_basis",
        "reference",
        "contact",
        "description",
        "message",
        "effective_from",
        "expires",
        "action",
        "ede",
        "ttl",
        "warning_page",
        "redirect",
        "clients",
        "except_clients",
        "block",
        "allow",
        "lists",
    }
)
BLOCK_ENTRY_KEYS = frozenset(
    {
        "name",
        "action",
        "reason",
        "reference",
        "clients",
        "except_clients",
        "redirect",
        "allow_public_suffix",
    }
)
ALLOW_ENTRY_KEYS = frozenset({"name", "reason", "reference", "clients", "except_clients"})
ENTRY_KEYS = BLOCK_ENTRY_KEYS
LIST_KEYS = frozenset({"file", "format", "column", "delimiter", "encoding", "skip_rows"})
CSV_ONLY_KEYS = ("column", "delimiter", "encoding", "skip_rows")
LIST_FORMATS = FORMATS
BLOCK_ACTIONS = tuple(a for a in ACTION_LABELS if a not in ("allow", "tcp-only"))
ENTRY_ACTIONS = (*BLOCK_ACTIONS, "allow")
MAX_TTL = 2**31 - 1

_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_REDIRECT_EXAMPLE = "redirect: {cname: warning.example} or redirect: {ipv4: [192.0.2.1]}"


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry under block: or allow:, as written (per-entry values override the policy's)."""

    name: str  # normalised presentation form (IDNA, lower case, no trailing dot)
    scope: Scope
    action: Action
    reference: str = ""
    reason: str = ""
    line: int = 0
    column: int = 0
    # None: the policy's scope. Otherwise the entry's effective scope: its own clients
    # (or the policy's, when it names none) minus the policy's and its own except_clients.
    clients: ClientScope | None = None
    redirect: Redirect | None = None  # for action redirect; None: the policy's
    allow_public_suffix: bool = False


@dataclass(frozen=True, slots=True)
class ListRef:
    """A third-party list a policy references; every name in it gets the policy's action."""

    path: Path
    format: str  # domains | hosts | adblock | csv
    line: int
    column: int = 0
    csv_column: str | int | None = None  # csv: header name or 0-based index
    delimiter: str = ","
    encoding: str = "utf-8"
    skip_rows: int = 0  # csv: lines before the header or the first row (a timestamp, say)


@dataclass(frozen=True)
class PolicyFile:
    info: PolicyInfo
    action: Action
    entries: tuple[Entry, ...] = ()
    lists: tuple[ListRef, ...] = ()
    sha256: str = ""
    contact: str = ""
    description: str = field(default="", repr=False)
    clients: ClientScope = EVERYONE  # who the policy applies to
    redirect: Redirect | None = None  # default target of the redirect action
    ttl: int | None = None  # TTL of this policy's answers; None: warning_page.ttl
    # This policy's own warning page; None: the config's. Its ttl is this policy's
    # ttl when the policy sets one (ttl: or warning_page.ttl), else 60.
    warning_page: Answers | None = None


def load_policy(path: Path) -> PolicyFile:
    """A policy file (a regular file of at most files.MAX_YAML_SIZE, UTF-8), checked."""
    source = str(path)
    raw = files.read_bytes(path, "policy file", files.MAX_YAML_SIZE, PolicyError)
    digest = hashlib.sha256(raw).hexdigest()
    text = files.decode(raw, source, PolicyError)
    del raw  # parsed from the text alone
    return parse_policy(text, source, path.parent, digest)


Keys = dict[str, tuple[yaml.Node, yaml.Node]]


def parse_policy(text: str, source: str, base_dir: Path, sha256: str = "") -> PolicyFile:
    doc = Doc(text, source, PolicyError)
    if doc.root is None:
        doc.fail(None, "the policy file is empty: start it with a line like 'id: my-policy'")
    keys = doc.mapping(doc.root, "a policy file")
    _reject_unknown(doc, keys, POLICY_KEYS, "the policy")
    if "id" not in keys:
        doc.fail(doc.root, "the policy has no id: add a line like 'id: kr-national-security'")

    def text_of(key: str) -> str:
        return _text(doc, keys[key][1], key).strip() if key in keys else ""

    policy_id = text_of("id")
    if not policy_id or any(c.isspace() for c in policy_id):
        doc.fail(keys["id"][1], "id must be one word, such as kr-national-security")
    redirect = _redirect(doc, keys["redirect"][1], "redirect") if "redirect" in keys else None
    action = Action.WARNING_PAGE
    if "action" in keys:
        action = _action(doc, keys["action"][1], BLOCK_ACTIONS)
        if action is Action.REDIRECT and redirect is None:
            doc.fail(
                keys["action"][1],
                f"action redirect needs a target: add {_REDIRECT_EXAMPLE} to the policy",
            )
    ede_default = "censored" if text_of("authority") else "blocked"
    ede_name = text_of("ede").lower() or ede_default
    if ede_name not in EDE_CODES:
        doc.fail(
            keys["ede"][1], f"ede must be one of {', '.join(EDE_CODES)}, not {quote(ede_name)}"
        )
    effective_from = _moment(doc, keys, "effective_from")
    expires = _moment(doc, keys, "expires")
    if effective_from and expires and expires <= effective_from:
        doc.fail(
            keys["expires"][1],
            f"expires ({expires.isoformat()}) must be after effective_from "
            f"({effective_from.isoformat()}); check the two dates",
        )
    ttl = _ttl(doc, keys)
    warning_page = None
    if "warning_page" in keys:
        warning_page = _warning_page(doc, keys["warning_page"][1], ttl)
    contact = text_of("contact")
    info = PolicyInfo(
        id=policy_id,
        source=source,
        title=text_of("title"),
        authority=text_of("authority"),
        legal_basis=text_of("legal_basis"),
        reference=text_of("reference"),
        ede=EDE_CODES[ede_name],
        contact=contact,
        message=text_of("message"),
        effective_from=effective_from,
        expires=expires,
    )
    include = _networks(doc, keys, "clients")
    exclude = _networks(doc, keys, "except_clients")
    clients = ClientScope(include, exclude) if include or exclude else EVERYONE
    context = _Context(doc, action, clients, redirect)
    entries: list[Entry] = []
    for key in ("block", "allow"):
        if key in keys:
            entries.extend(_entries(context, keys[key][1], key))
    lists = tuple(_lists(doc, keys["lists"][1], base_dir)) if "lists" in keys else ()
    return PolicyFile(
        info,
        action,
        tuple(entries),
        lists,
        sha256,
        contact,
        text_of("description"),
        clients,
        redirect,
        ttl,
        warning_page,
    )


# --- values -------------------------------------------------------------------------------


def _reject_unknown(doc: Doc, keys: Keys, known: frozenset[str], what: str) -> None:
    for key, (key_node, _) in keys.items():
        if key not in known:
            close = difflib.get_close_matches(key.replace("-", "_").lower(), known, 1, 0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            choices = ", ".join(sorted(known))
            doc.fail(key_node, f"unknown key {quote(key)} in {what}{hint} (known keys: {choices})")


def _text(doc: Doc, node: yaml.Node, what: str, required: bool = False) -> str:
    """Text as written: a number or a date stays exactly as in the file; yes/no is an error."""
    if isinstance(node, yaml.ScalarNode):
        if node.tag == _BOOL_TAG:
            doc.fail(
                node,
                f"{what} must be text, but YAML reads {node.value} as a yes/no value: "
                f"put it in quotes, like '{node.value}'",
            )
        if node.tag == _NULL_TAG:
            if required:
                doc.fail(node, f"{what} is empty: write a value or remove the line")
            return ""
        return str(node.value)
    kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
    doc.fail(node, f"{what} must be text, not {kind}")


def _action(doc: Doc, node: yaml.Node, allowed: tuple[str, ...]) -> Action:
    label = _text(doc, node, "action", required=True).strip().lower()
    if label not in allowed:
        doc.fail(node, f"action must be one of {', '.join(allowed)}, not {quote(label)}")
    return Action.from_label(label)


def _moment(doc: Doc, keys: Keys, what: str) -> datetime | None:
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


def _ttl(doc: Doc, keys: Keys) -> int | None:
    ttl = doc.integer(keys["ttl"][1], "ttl", 0, MAX_TTL) if "ttl" in keys else None
    if "warning_page" in keys and isinstance(keys["warning_page"][1], yaml.MappingNode):
        page = doc.mapping(keys["warning_page"][1], "warning_page")
        if "ttl" in page:
            page_ttl = doc.integer(page["ttl"][1], "warning_page.ttl", 0, MAX_TTL)
            if ttl is not None and ttl != page_ttl:
                doc.fail(
                    page["ttl"][1],
                    f"warning_page.ttl ({page_ttl}) and ttl ({ttl}) disagree; keep one of them",
                )
            ttl = page_ttl
    return ttl


def _addresses(doc: Doc, fields: Keys, key: str, what: str) -> list[Any]:
    version = 4 if key == "ipv4" else 6
    example = "192.0.2.1" if version == 4 else "2001:db8::1"
    out = []
    if key in fields:
        for item in doc.sequence(fields[key][1], f"{what}.{key}"):
            text = _text(doc, item, f"{what}.{key}", required=True).strip()
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


def _warning_page(doc: Doc, node: yaml.Node, ttl: int | None) -> Answers:
    if not isinstance(node, yaml.MappingNode):
        doc.fail(
            node, "warning_page must list its addresses, like warning_page: {ipv4: [192.0.2.80]}"
        )
    fields = doc.mapping(node, "warning_page")
    _reject_unknown(doc, fields, frozenset({"ipv4", "ipv6", "ttl"}), "warning_page")
    ipv4 = _addresses(doc, fields, "ipv4", "warning_page")
    ipv6 = _addresses(doc, fields, "ipv6", "warning_page")
    if not ipv4 and not ipv6:
        doc.fail(
            node,
            "warning_page has no address: add ipv4: [...] and/or ipv6: [...], "
            "or remove it to use the resolver's warning page",
        )
    return Answers(tuple(ipv4), tuple(ipv6), 60 if ttl is None else ttl)


def _redirect(doc: Doc, node: yaml.Node, what: str) -> Redirect:
    if not isinstance(node, yaml.MappingNode):
        doc.fail(node, f"{what} must give its target, like {_REDIRECT_EXAMPLE}")
    fields = doc.mapping(node, what)
    _reject_unknown(doc, fields, frozenset({"ipv4", "ipv6", "cname"}), what)
    ipv4 = _addresses(doc, fields, "ipv4", what)
    ipv6 = _addresses(doc, fields, "ipv6", what)
    cname = ""
    if "cname" in fields:
        cname_node = fields["cname"][1]
        raw = _text(doc, cname_node, f"{what}.cname", required=True)
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
        doc.fail(node, f"{what} has no target: add a cname or addresses, like {_REDIRECT_EXAMPLE}")
    return Redirect(tuple(ipv4), tuple(ipv6), cname)


def _networks(doc: Doc, keys: Keys, key: str) -> tuple[Network, ...]:
    if key not in keys:
        return ()
    node = keys[key][1]
    items = doc.sequence(node, key)
    if not items:
        doc.fail(node, f"{key} is empty: list networks like 192.0.2.0/24, or remove the line")
    out = []
    for item in items:
        text = _text(doc, item, f"an entry of {key}", required=True).strip()
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


# --- entries ------------------------------------------------------------------------------


@dataclass
class _Context:
    """What entries inherit from their policy, and what the entries seen so far were."""

    doc: Doc
    action: Action
    clients: ClientScope
    redirect: Redirect | None
    seen: dict[tuple[str, Scope, ClientScope | None], int] = field(default_factory=dict)


def _covers(name: str, scope: Scope, target: str) -> bool:
    below = target.endswith("." + name)
    if scope is Scope.EXACT:
        return target == name
    if scope is Scope.BELOW:
        return below
    return below or target == name


def _entries(ctx: _Context, node: yaml.Node, key: str) -> list[Entry]:
    return [_entry(ctx, item, key) for item in ctx.doc.sequence(node, key)]


def _entry(ctx: _Context, item: yaml.Node, key: str) -> Entry:
    doc = ctx.doc
    line, column = item.start_mark.line + 1, item.start_mark.column + 1
    fields: Keys = {}
    if isinstance(item, yaml.MappingNode):
        fields = doc.mapping(item, f"an entry of {key}")
        if "name" not in fields and len(fields) == 1:
            (only, (key_node, value_node)) = next(iter(fields.items()))
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _NULL_TAG:
                doc.fail(
                    key_node,
                    f"{quote(only + ':')} ends with a colon, so YAML reads it as a key; "
                    "remove the colon",
                )
        if key == "allow":
            for block_only in ("action", "redirect", "allow_public_suffix"):
                if block_only in fields:
                    doc.fail(
                        fields[block_only][0],
                        f"entries under allow cannot have {block_only}: "
                        "remove it, or move the entry under block",
                    )
        _reject_unknown(
            doc,
            fields,
            BLOCK_ENTRY_KEYS if key == "block" else ALLOW_ENTRY_KEYS,
            f"an entry of {key}",
        )
        if "name" not in fields:
            doc.fail(item, f"an entry of {key} written as a mapping needs a name: key")
        name_node = fields["name"][1]
    else:
        name_node = item
    if isinstance(name_node, yaml.ScalarNode) and name_node.tag == _NULL_TAG:
        doc.fail(name_node, f"an entry of {key} is empty: write a name, or remove the line")
    raw = _text(doc, name_node, f"an entry of {key}", required=True)
    try:
        name, scope = parse_entry(raw)
    except ValueError as exc:
        doc.fail(name_node, str(exc))

    def text(field_name: str) -> str:
        return _text(doc, fields[field_name][1], field_name).strip() if field_name in fields else ""

    reference, reason = text("reference"), text("reason")
    action = Action.ALLOW if key == "allow" else ctx.action
    own_redirect = None
    if "redirect" in fields:
        own_redirect = _redirect(doc, fields["redirect"][1], "redirect")
    if "action" in fields:
        action = _action(doc, fields["action"][1], ENTRY_ACTIONS)
        if own_redirect is not None and action is not Action.REDIRECT:
            doc.fail(
                fields["redirect"][0],
                f"redirect: is only used with action: redirect, not {action.label}; "
                "remove it or change the action",
            )
    elif own_redirect is not None:
        action = Action.REDIRECT  # a target alone says what to do
    if action is Action.REDIRECT:
        target = own_redirect or ctx.redirect
        if target is None:
            doc.fail(
                fields["action"][1] if "action" in fields else name_node,
                f"action redirect needs a target: add {_REDIRECT_EXAMPLE} "
                "to this entry or to the policy",
            )
        if target.cname and _covers(name, scope, target.cname):
            doc.fail(
                name_node,
                f"the redirect target {quote(target.cname)} is itself covered by {quote(raw)}, "
                "so clients would be sent round in a loop; redirect to a name outside it",
            )
    allow_public_suffix = False
    if "allow_public_suffix" in fields:
        flag_node = fields["allow_public_suffix"][1]
        flag = doc.value(flag_node)
        if not isinstance(flag, bool):
            doc.fail(flag_node, "allow_public_suffix must be true or false")
        allow_public_suffix = flag
        if flag and not reason:
            doc.fail(
                fields["allow_public_suffix"][0],
                "allow_public_suffix needs a reason: add reason: with the grounds "
                "for blocking every name under it",
            )
    guarded = action is not Action.ALLOW and scope is not Scope.EXACT
    if guarded and not allow_public_suffix and is_public_suffix(name):
        _public_suffix_error(doc, name_node, raw, name, fields)
    clients = _entry_clients(ctx, fields)
    dup_key = (name, scope, clients)
    first = ctx.seen.get(dup_key)
    if first is not None:
        doc.fail(
            name_node,
            f"{quote(raw)} is already listed on line {first} of this policy; "
            "keep one of the entries",
        )
    ctx.seen[dup_key] = line
    return Entry(
        name,
        scope,
        action,
        reference,
        reason,
        line,
        column,
        clients,
        own_redirect,
        allow_public_suffix,
    )


def _public_suffix_error(doc: Doc, node: yaml.Node, raw: str, name: str, fields: Keys) -> NoReturn:
    if "." not in name:
        what = "a top-level domain"
        example = f"example.{name}"
    else:
        what = "a public suffix (sites are registered under it)"
        example = f"example.{name}"
    if fields:
        how = "add allow_public_suffix: true and a reason: to this entry"
    else:
        how = f"write it as {{name: {quote(raw)}, allow_public_suffix: true, reason: ...}}"
    doc.fail(
        node,
        f"{quote(raw)} is {what}: blocking it would block every name under it; write the full "
        f"names, such as {quote(example)}, or, if it really must be blocked, {how}",
    )


def _entry_clients(ctx: _Context, fields: Keys) -> ClientScope | None:
    if "clients" not in fields and "except_clients" not in fields:
        return None
    include = _networks(ctx.doc, fields, "clients") or ctx.clients.include
    exclude = ctx.clients.exclude + _networks(ctx.doc, fields, "except_clients")
    return ClientScope(include, exclude)


# --- lists ----------------------------------------------------------------------------------


def _lists(doc: Doc, node: yaml.Node, base_dir: Path) -> list[ListRef]:
    out = []
    for item in doc.sequence(node, "lists", allow_scalar=False):
        if isinstance(item, yaml.ScalarNode):
            doc.fail(item, "an entry of lists must be a mapping, like {file: lists/ads.txt}")
        fields = doc.mapping(item, "an entry of lists")
        _reject_unknown(doc, fields, LIST_KEYS, "an entry of lists")
        if "file" not in fields:
            doc.fail(item, "an entry of lists needs a file: key, like file: lists/ads.txt")
        file_node = fields["file"][1]
        file_text = _text(doc, file_node, "file", required=True).strip()
        fmt = "domains"
        if "format" in fields:
            fmt = _text(doc, fields["format"][1], "format", required=True).strip().lower()
            if fmt not in LIST_FORMATS:
                doc.fail(
                    fields["format"][1],
                    f"format must be one of {', '.join(LIST_FORMATS)}, not {quote(fmt)}",
                )
        path = Path(file_text)
        if not path.is_absolute():
            path = base_dir / path
        problem = files.file_problem(path)
        if problem is not None:
            doc.fail(file_node, f"list file {quote(str(path))}: {problem}; check the path")
        line, column = item.start_mark.line + 1, item.start_mark.column + 1
        if fmt != "csv":
            for key in CSV_ONLY_KEYS:
                if key in fields:
                    doc.fail(
                        fields[key][0],
                        f"{key} is only read for format: csv; remove it or set format: csv",
                    )
            out.append(ListRef(path, fmt, line, column))
            continue
        out.append(_csv_list(doc, item, fields, path, line, column))
    return out


def _csv_list(
    doc: Doc, item: yaml.Node, fields: Keys, path: Path, line: int, column: int
) -> ListRef:
    if "column" not in fields:
        doc.fail(
            item,
            "format csv needs column: the header of the column with the names (column: domain) "
            "or its number counting from 0 (column: 1)",
        )
    column_node = fields["column"][1]
    csv_column: str | int
    if isinstance(column_node, yaml.ScalarNode) and column_node.tag.endswith(":int"):
        csv_column = doc.integer(column_node, "column", 0)
    else:
        csv_column = _text(doc, column_node, "column", required=True).strip()
    delimiter = ","
    if "delimiter" in fields:
        delimiter = _text(doc, fields["delimiter"][1], "delimiter", required=True)
        if len(delimiter) != 1:
            doc.fail(
                fields["delimiter"][1],
                f"delimiter must be one character, such as ';', not {quote(delimiter)} "
                '(for a tab write "\\t" in double quotes)',
            )
    encoding = "utf-8"
    if "encoding" in fields:
        encoding = _text(doc, fields["encoding"][1], "encoding", required=True).strip()
        try:
            codecs.lookup(encoding)
        except LookupError:
            doc.fail(
                fields["encoding"][1],
                f"unknown encoding {quote(encoding)}; use a name such as utf-8, cp1251 or latin-1",
            )
    skip_rows = doc.integer(fields["skip_rows"][1], "skip_rows", 0) if "skip_rows" in fields else 0
    if isinstance(csv_column, str):
        _check_header(doc, column_node, path, csv_column, delimiter, encoding, skip_rows)
    return ListRef(path, "csv", line, column, csv_column, delimiter, encoding, skip_rows)


def _check_header(
    doc: Doc,
    node: yaml.Node,
    path: Path,
    column: str,
    delimiter: str,
    encoding: str,
    skip_rows: int,
) -> None:
    try:
        header = csv_header(path, delimiter, encoding, skip_rows)
    except PolicyError as exc:
        doc.fail(node, f"{path.name}: {exc.message}")
    if find_column(header, column) is None:
        shown = ", ".join(quote(h, 60) for h in header[:20]) or "none"
        hint = ", and check skip_rows and delimiter" if len(header) <= 1 else ""
        doc.fail(
            node,
            f"column {quote(column)} is not in the header of {path.name} (its columns: {shown}); "
            f"write one of these, or the column's number counting from 0{hint}",
        )
