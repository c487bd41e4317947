"""The entries of a policy file (``block:`` and ``allow:``): each checked, with its line.

An entry is a name (``name``, ``=name`` or ``*.name``) or a mapping with the name and
what it overrides of its policy: action, redirect target, client scope, reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

import yaml

from resolver.core.errors import quote
from resolver.core.matcher import Scope
from resolver.core.verdict import ACTION_LABELS, Action, ClientScope, Redirect
from resolver.sources.names import covers, is_public_suffix, parse_entry
from resolver.sources.yamlsource import Doc
from resolver.sources.yamlvalues import (
    REDIRECT_EXAMPLE,
    Keys,
    is_null,
    read_action,
    read_networks,
    read_redirect,
    read_text,
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
BLOCK_ACTIONS = tuple(a for a in ACTION_LABELS if a not in ("allow", "tcp-only"))
ENTRY_ACTIONS = (*BLOCK_ACTIONS, "allow")


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


_new = object.__new__
_SET = {name: Entry.__dict__[name].__set__ for name in Entry.__slots__}
_set_name, _set_scope, _set_action = _SET["name"], _SET["scope"], _SET["action"]
_set_line, _set_column = _SET["line"], _SET["column"]
_DEFAULTS = [
    (_SET[name], default)
    for name, default in (
        ("reference", ""),
        ("reason", ""),
        ("clients", None),
        ("redirect", None),
        ("allow_public_suffix", False),
    )
]


def plain_entry(name: str, scope: Scope, action: Action, line: int, column: int) -> Entry:
    """Entry(name, scope, action, line=line, column=column), made without the frozen
    dataclass's checked assignments (half the time, for a list of a million entries)."""
    entry: Entry = _new(Entry)
    _set_name(entry, name)
    _set_scope(entry, scope)
    _set_action(entry, action)
    _set_line(entry, line)
    _set_column(entry, column)
    for setter, default in _DEFAULTS:
        setter(entry, default)
    return entry


@dataclass
class EntryContext:
    """What entries inherit from their policy, and what the entries seen so far were."""

    doc: Doc
    action: Action
    clients: ClientScope
    redirect: Redirect | None
    seen: dict[tuple[str, Scope, ClientScope | None], int] = field(default_factory=dict)
    # The lines of the entries without a client scope, by the entry as written in its
    # normal form (name, =name, *.name): one string per entry, not a tuple.
    plain: dict[str, int] = field(default_factory=dict)


def read_entries(ctx: EntryContext, node: yaml.Node, key: str) -> list[Entry]:
    """The entries under ``block`` or ``allow`` (``key``), in file order."""
    return [read_entry(ctx, item, key) for item in ctx.doc.sequence(node, key)]


_PREFIX = {Scope.SUBTREE: "", Scope.EXACT: "=", Scope.BELOW: "*."}


def read_entry(ctx: EntryContext, item: yaml.Node, key: str) -> Entry:
    """One entry (a name, or a mapping with a name) under ``block`` or ``allow``."""
    doc = ctx.doc
    line, column = item.start_mark.line + 1, item.start_mark.column + 1
    fields: Keys = {}
    if isinstance(item, yaml.MappingNode):
        fields = doc.mapping(item, f"an entry of {key}")
        if "name" not in fields and len(fields) == 1:
            (only, (key_node, value_node)) = next(iter(fields.items()))
            if is_null(value_node):
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
        doc.reject_unknown(
            fields,
            BLOCK_ENTRY_KEYS if key == "block" else ALLOW_ENTRY_KEYS,
            f"an entry of {key}",
        )
        if "name" not in fields:
            doc.fail(item, f"an entry of {key} written as a mapping needs a name: key")
        name_node = fields["name"][1]
    else:
        name_node = item
    if is_null(name_node):
        doc.fail(name_node, f"an entry of {key} is empty: write a name, or remove the line")
    raw = read_text(doc, name_node, f"an entry of {key}", required=True)
    try:
        name, scope = parse_entry(raw)
    except ValueError as exc:
        doc.fail(name_node, str(exc))

    def text(field_name: str) -> str:
        return (
            read_text(doc, fields[field_name][1], field_name).strip()
            if field_name in fields
            else ""
        )

    reference, reason = text("reference"), text("reason")
    action = Action.ALLOW if key == "allow" else ctx.action
    own_redirect = None
    if "redirect" in fields:
        own_redirect = read_redirect(doc, fields["redirect"][1], "redirect")
    if "action" in fields:
        action = read_action(doc, fields["action"][1], ENTRY_ACTIONS)
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
                f"action redirect needs a target: add {REDIRECT_EXAMPLE} "
                "to this entry or to the policy",
            )
        if target.cname and covers(name, scope, target.cname):
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
    plain_key = _PREFIX[scope] + name
    first = ctx.seen.get(dup_key) if clients is not None else ctx.plain.get(plain_key)
    if first is not None:
        doc.fail(
            name_node,
            f"{quote(raw)} is already listed on line {first} of this policy; "
            "keep one of the entries",
        )
    if clients is not None:
        ctx.seen[dup_key] = line
    else:
        ctx.plain[plain_key] = line
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


def _entry_clients(ctx: EntryContext, fields: Keys) -> ClientScope | None:
    if "clients" not in fields and "except_clients" not in fields:
        return None
    include = read_networks(ctx.doc, fields, "clients") or ctx.clients.include
    exclude = ctx.clients.exclude + read_networks(ctx.doc, fields, "except_clients")
    return ClientScope(include, exclude)
