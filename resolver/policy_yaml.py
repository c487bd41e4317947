"""Policy files written by regulators: YAML in, checked entries out, every error with file:line.

A policy file is strict: one bad entry fails the whole file, with a message that
says how to fix it. Lists a policy references (``lists:``) are third-party data and
read leniently by resolver.lists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from resolver.errors import PolicyError
from resolver.names import parse_entry
from resolver.policy import (
    ACTION_LABELS,
    EDE_CODES,
    EVERYONE,
    Action,
    Answers,
    ClientScope,
    PolicyInfo,
    Redirect,
    Scope,
)
from resolver.yamlsource import Doc

POLICY_KEYS = frozenset(
    {
        "id",
        "title",
        "authority",
        "legal_basis",
        "reference",
        "contact",
        "description",
        "action",
        "ede",
        "block",
        "allow",
        "lists",
    }
)
ENTRY_KEYS = frozenset({"name", "action", "reason", "reference"})
LIST_KEYS = frozenset({"file", "format"})
LIST_FORMATS = ("domains", "hosts")
BLOCK_ACTIONS = tuple(a for a in ACTION_LABELS if a not in ("allow", "redirect", "tcp-only"))


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
    clients: ClientScope | None = None  # None: the policy's scope
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
    warning_page: Answers | None = None  # this policy's own warning page; None: the config's


def load_policy(path: Path) -> PolicyFile:
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file: {exc.strerror}", source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", source
        ) from None
    return parse_policy(text, source, path.parent, hashlib.sha256(raw).hexdigest())


def parse_policy(text: str, source: str, base_dir: Path, sha256: str = "") -> PolicyFile:
    doc = Doc(text, source, PolicyError)
    keys = doc.mapping(doc.root, "a policy file")
    doc.reject_unknown(keys, POLICY_KEYS, "the policy")
    if "id" not in keys:
        doc.fail(doc.root, "the policy has no id: add a line like 'id: kr-national-security'")

    def text_of(key: str) -> str:
        return doc.string(keys[key][1], key).strip() if key in keys else ""

    policy_id = text_of("id")
    if not policy_id or any(c.isspace() for c in policy_id):
        doc.fail(keys["id"][1], "id must be one word, such as kr-national-security")
    action = Action.WARNING_PAGE
    if "action" in keys:
        action = _action(doc, keys["action"][1], BLOCK_ACTIONS)
    ede_default = "censored" if text_of("authority") else "blocked"
    ede_name = text_of("ede").lower() or ede_default
    if ede_name not in EDE_CODES:
        doc.fail(keys["ede"][1], f"ede must be one of {', '.join(EDE_CODES)}, not {ede_name!r}")
    info = PolicyInfo(
        id=policy_id,
        source=source,
        title=text_of("title"),
        authority=text_of("authority"),
        legal_basis=text_of("legal_basis"),
        reference=text_of("reference"),
        ede=EDE_CODES[ede_name],
    )
    entries: list[Entry] = []
    for key, default in (("block", action), ("allow", Action.ALLOW)):
        if key in keys:
            entries.extend(_entries(doc, keys[key][1], key, default))
    lists = tuple(_lists(doc, keys["lists"][1], base_dir)) if "lists" in keys else ()
    return PolicyFile(
        info, action, tuple(entries), lists, sha256, text_of("contact"), text_of("description")
    )


def _action(doc: Doc, node: yaml.Node, allowed: tuple[str, ...]) -> Action:
    label = doc.string(node, "action").strip().lower()
    if label not in allowed:
        doc.fail(node, f"action must be one of {', '.join(allowed)}, not {label!r}")
    return Action.from_label(label)


def _entries(doc: Doc, node: yaml.Node, key: str, default: Action) -> list[Entry]:
    out = []
    for item in doc.sequence(node, key):
        line = item.start_mark.line + 1
        reference = reason = ""
        action = default
        if isinstance(item, yaml.MappingNode):
            fields = doc.mapping(item, f"an entry of {key}")
            doc.reject_unknown(fields, ENTRY_KEYS, f"an entry of {key}")
            if "name" not in fields:
                doc.fail(item, f"an entry of {key} written as a mapping needs a name: key")
            name_node = fields["name"][1]
            if "action" in fields and key == "block":
                action = _action(doc, fields["action"][1], BLOCK_ACTIONS)
            elif "action" in fields:
                doc.fail(fields["action"][0], "entries under allow cannot have an action")
            if "reference" in fields:
                reference = doc.string(fields["reference"][1], "reference").strip()
            if "reason" in fields:
                reason = doc.string(fields["reason"][1], "reason").strip()
        else:
            name_node = item
        raw = doc.string(name_node, f"an entry of {key}")
        try:
            name, scope = parse_entry(raw)
        except ValueError as exc:
            doc.fail(name_node, str(exc))
        if key == "block" and name.count(".") == 0 and scope is not Scope.EXACT:
            doc.fail(
                name_node,
                f"{raw!r} is a top-level domain: blocking it would block every name under it; "
                "write the full name, such as 'example.com'",
            )
        out.append(Entry(name, scope, action, reference, reason, line))
    return out


def _lists(doc: Doc, node: yaml.Node, base_dir: Path) -> list[ListRef]:
    out = []
    for item in doc.sequence(node, "lists", allow_scalar=False):
        fields = doc.mapping(item, "an entry of lists")
        doc.reject_unknown(fields, LIST_KEYS, "an entry of lists")
        if "file" not in fields:
            doc.fail(item, "an entry of lists needs a file: key")
        file_text = doc.string(fields["file"][1], "file")
        fmt = doc.string(fields["format"][1], "format").lower() if "format" in fields else "domains"
        if fmt not in LIST_FORMATS:
            doc.fail(
                fields["format"][1], f"format must be one of {', '.join(LIST_FORMATS)}, not {fmt!r}"
            )
        path = Path(file_text)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            doc.fail(fields["file"][1], f"list file {str(path)!r} does not exist")
        out.append(ListRef(path, fmt, item.start_mark.line + 1))
    return out
