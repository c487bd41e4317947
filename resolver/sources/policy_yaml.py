"""Policy files written by regulators: YAML in, checked entries out, every error with file:line.

A policy file is strict: one bad entry fails the whole file, with a message that
says how to fix it. Its entries are read by resolver.sources.policy_entries, its
list references by resolver.sources.policy_lists; the lists themselves are
third-party data, read leniently by resolver.sources.lists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import yaml

from resolver.core.errors import PolicyError, quote
from resolver.core.verdict import (
    EDE_CODES,
    EVERYONE,
    Action,
    Answers,
    ClientScope,
    PolicyInfo,
    Redirect,
)
from resolver.sources import files
from resolver.sources.policy_entries import BLOCK_ACTIONS, Entry, EntryContext, read_entries
from resolver.sources.policy_lists import ListRef, read_lists
from resolver.sources.policy_plain import PlainEntries, PlainList, cut, read_plain
from resolver.sources.yamlsource import Doc
from resolver.sources.yamlvalues import (
    MAX_TTL,
    REDIRECT_EXAMPLE,
    Keys,
    read_action,
    read_moment,
    read_networks,
    read_redirect,
    read_text,
    read_translated,
    read_url,
    read_warning_page,
)

# The fields a policy may give in several languages (``message: {ko: ..., en: ...}``).
TRANSLATED = ("title", "authority", "legal_basis", "message")
# A policy file's size: YAML at most files.MAX_YAML_SIZE; past that, only a file whose
# bulk is a plain list under block: (resolver.sources.policy_plain), read line by line.
MAX_POLICY_SIZE = 128 * files.MiB
COMPACT = 2000  # a longer plain block: list is kept as PlainEntries, not as Entry objects

POLICY_KEYS = frozenset(
    {
        "id",
        "title",
        "authority",
        "authority_url",
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


def load_policy(path: Path, state_dir: Path | None = None) -> PolicyFile:
    """A policy file (a regular file of at most MAX_POLICY_SIZE, UTF-8), checked;
    ``state_dir`` holds the copies of its fetched lists (the default one when None)."""
    source = str(path)
    raw = files.read_bytes(path, "policy file", MAX_POLICY_SIZE, PolicyError)
    digest = hashlib.sha256(raw).hexdigest()
    size = len(raw)
    text = files.decode(raw, source, PolicyError)
    del raw  # parsed from the text alone
    return parse_policy(text, source, path.parent, digest, state_dir, size)


class _NotPlain(Exception):
    """The block: list cut out was not the file's block: list of plain items after all."""


def parse_policy(
    text: str,
    source: str,
    base_dir: Path,
    sha256: str = "",
    state_dir: Path | None = None,
    size: int | None = None,
) -> PolicyFile:
    """A policy from its ``text`` (``size``: its length in bytes, when known; ``state_dir``
    holds the copies of its fetched lists, the default one when None).

    A long ``block:`` list of plain items is read line by line (resolver.sources.policy_plain),
    the rest as YAML. Whatever goes wrong that way, a file small enough for the YAML
    parser is read again by it alone, so its result and its errors are the parser's."""
    size = len(text) if size is None else size
    plain = cut(text)
    if plain is not None:
        try:
            return _parse(plain.rest, source, base_dir, sha256, plain, state_dir)
        except (PolicyError, _NotPlain) as exc:
            if size > files.MAX_YAML_SIZE and isinstance(exc, PolicyError):
                raise
    if size > files.MAX_YAML_SIZE:
        raise PolicyError(
            f"{files.too_big('policy file', files.MAX_YAML_SIZE)} for YAML; a larger policy "
            "lists its names under block: one per line, as '  - name', or in a list file "
            "under lists:",
            source,
            0,
            0,
        )
    return _parse(text, source, base_dir, sha256, None, state_dir)


def _parse(
    text: str,
    source: str,
    base_dir: Path,
    sha256: str,
    plain: PlainList | None,
    state_dir: Path | None = None,
) -> PolicyFile:
    doc = Doc(text, source, PolicyError)
    if doc.root is None:
        doc.fail(None, "the policy file is empty: start it with a line like 'id: my-policy'")
    keys = doc.mapping(doc.root, "a policy file")
    doc.reject_unknown(keys, POLICY_KEYS, "the policy")
    if "id" not in keys:
        doc.fail(doc.root, "the policy has no id: add a line like 'id: kr-national-security'")

    translated: dict[str, str] = {}
    translations: list[tuple[str, str, str]] = []
    for key in TRANSLATED:
        if key in keys:
            translated[key], texts = read_translated(doc, keys[key][1], key)
            translations.extend((key, language, text) for language, text in texts)

    def text_of(key: str) -> str:
        if key in translated:
            return translated[key]
        return read_text(doc, keys[key][1], key).strip() if key in keys else ""

    policy_id = text_of("id")
    if not policy_id or any(c.isspace() for c in policy_id):
        doc.fail(keys["id"][1], "id must be one word, such as kr-national-security")
    redirect = read_redirect(doc, keys["redirect"][1], "redirect") if "redirect" in keys else None
    action = Action.WARNING_PAGE
    if "action" in keys:
        action = read_action(doc, keys["action"][1], BLOCK_ACTIONS)
        if action is Action.REDIRECT and redirect is None:
            doc.fail(
                keys["action"][1],
                f"action redirect needs a target: add {REDIRECT_EXAMPLE} to the policy",
            )
    ede_default = "censored" if text_of("authority") else "blocked"
    ede_name = text_of("ede").lower() or ede_default
    if ede_name not in EDE_CODES:
        doc.fail(
            keys["ede"][1], f"ede must be one of {', '.join(EDE_CODES)}, not {quote(ede_name)}"
        )
    effective_from = read_moment(doc, keys, "effective_from")
    expires = read_moment(doc, keys, "expires")
    if effective_from and expires and expires <= effective_from:
        doc.fail(
            keys["expires"][1],
            f"expires ({expires.isoformat()}) must be after effective_from "
            f"({effective_from.isoformat()}); check the two dates",
        )
    ttl = doc.integer(keys["ttl"][1], "ttl", 0, MAX_TTL) if "ttl" in keys else None
    warning_page = None
    if "warning_page" in keys:
        warning_page, page_ttl = read_warning_page(doc, keys["warning_page"][1], ttl)
        ttl = page_ttl if ttl is None else ttl
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
        authority_url=(
            read_url(doc, keys["authority_url"][1], "authority_url")
            if "authority_url" in keys
            else ""
        ),
        translations=tuple(translations),
    )
    include = read_networks(doc, keys, "clients")
    exclude = read_networks(doc, keys, "except_clients")
    clients = ClientScope(include, exclude) if include or exclude else EVERYONE
    context = EntryContext(doc, action, clients, redirect)
    entries: list[Entry] = []
    compact: PlainEntries | None = None
    for key in ("block", "allow"):
        if key == "block" and plain is not None:
            compact = _plain_entries(context, plain, keys)
        elif key in keys:
            entries.extend(read_entries(context, keys[key][1], key))
    if compact is not None and len(compact) > COMPACT:
        compact.extend(entries)
        all_entries: tuple[Entry, ...] = cast(tuple[Entry, ...], compact)
    else:
        all_entries = (*(compact or ()), *entries)
    lists = tuple(read_lists(doc, keys["lists"][1], base_dir, state_dir)) if "lists" in keys else ()
    return PolicyFile(
        info,
        action,
        all_entries,
        lists,
        sha256,
        contact,
        text_of("description"),
        clients,
        redirect,
        ttl,
        warning_page,
    )


def _plain_entries(context: EntryContext, plain: PlainList, keys: Keys) -> PlainEntries:
    """The entries of the list cut out, once the YAML parser confirmed where it was."""
    node = keys["block"][1] if "block" in keys else None
    if not (
        isinstance(node, yaml.SequenceNode)
        and not node.value
        and node.flow_style
        and node.start_mark.line == plain.line
    ):
        raise _NotPlain
    return read_plain(context, plain)
