"""The third-party lists a policy file references (``lists:``): where they are, how to
read them and which names each line covers. Reading them is resolver.sources.lists's
work; fetching those named by ``url:`` is the server's (resolver.service.feeds), which
keeps their last good copy where ``path`` points (resolver.sources.listcopy)."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from resolver.core.errors import PolicyError, quote
from resolver.core.matcher import Scope
from resolver.sources import files
from resolver.sources.listcopy import copy_path, default_state_dir
from resolver.sources.lists import FORMATS, csv_header, find_column
from resolver.sources.yamlsource import Doc
from resolver.sources.yamlvalues import Keys, read_text

LIST_KEYS = frozenset(
    {
        "file",
        "url",
        "format",
        "match",
        "refresh",
        "sha256",
        "ca_file",
        "column",
        "delimiter",
        "encoding",
        "skip_rows",
    }
)
CSV_ONLY_KEYS = ("column", "delimiter", "encoding", "skip_rows")
URL_ONLY_KEYS = ("refresh", "sha256", "ca_file")
MATCHES = ("subtree", "exact")
# What a line of each format means: a hosts file names hosts (as /etc/hosts, Pi-hole and
# AdGuard Home read it); ||name^ covers the name and what is under it by definition.
DEFAULT_MATCH = {"domains": "subtree", "hosts": "exact", "adblock": "subtree", "csv": "subtree"}
DEFAULT_REFRESH = 24 * 3600.0
MIN_REFRESH = 1.0
MAX_REFRESH = 366 * 86400.0
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ListRef:
    """A third-party list a policy references; every name in it gets the policy's action."""

    path: Path  # the file, or for a list with a url the saved copy of it
    format: str  # domains | hosts | adblock | csv
    line: int
    column: int = 0
    csv_column: str | int | None = None  # csv: header name or 0-based index
    delimiter: str = ","
    encoding: str = "utf-8"
    skip_rows: int = 0  # csv: lines before the header or the first row (a timestamp, say)
    match: str = ""  # subtree | exact; empty: the format's own (DEFAULT_MATCH)
    url: str | None = None  # fetched from here (HTTPS), its copy kept at path
    refresh: float = DEFAULT_REFRESH  # seconds between two fetches
    sha256: str | None = None  # the body must have this digest (a pinned list)
    ca_file: Path | None = None  # the server's certificate is checked against this CA

    @property
    def mode(self) -> str:
        """How its names match: "subtree" (the name and every name under it) or "exact"."""
        return self.match or DEFAULT_MATCH.get(self.format, "subtree")

    @property
    def scope(self) -> Scope:
        return Scope.EXACT if self.mode == "exact" else Scope.SUBTREE


def parse_duration(text: str) -> float | None:
    """``12h``, ``30m``, ``1d``, ``90s``, ``1h30m`` or a number of seconds; None if neither."""
    text = text.strip().lower().replace(" ", "")
    if text.isdigit():
        return float(text)
    found = _DURATION.fullmatch(text)
    if not text or found is None:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in found.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def read_lists(
    doc: Doc, node: yaml.Node, base_dir: Path, state_dir: Path | None = None
) -> list[ListRef]:
    """The lists under ``lists:``; each file must exist (a csv list's header is checked).
    A list with a ``url:`` is read from its copy under ``state_dir`` (the default state
    directory when None), which need not exist yet."""
    out = []
    for item in doc.sequence(node, "lists", allow_scalar=False):
        if isinstance(item, yaml.ScalarNode):
            doc.fail(item, "an entry of lists must be a mapping, like {file: lists/ads.txt}")
        fields = doc.mapping(item, "an entry of lists")
        doc.reject_unknown(fields, LIST_KEYS, "an entry of lists")
        if "file" in fields and "url" in fields:
            doc.fail(
                fields["url"][0],
                "an entry of lists takes file: (a list on this machine) or url: (a list "
                "fetched from where it is published), not both",
            )
        if "file" not in fields and "url" not in fields:
            doc.fail(
                item,
                "an entry of lists needs a file: key, like file: lists/ads.txt, "
                "or a url: key, like url: https://lists.example/ads.txt",
            )
        fmt = "domains"
        if "format" in fields:
            fmt = read_text(doc, fields["format"][1], "format", required=True).strip().lower()
            if fmt not in FORMATS:
                doc.fail(
                    fields["format"][1],
                    f"format must be one of {', '.join(FORMATS)}, not {quote(fmt)}",
                )
        match = _match(doc, fields, fmt)
        source = _Source(None, DEFAULT_REFRESH, None, None)
        if "url" in fields:
            source = _url_source(doc, fields, base_dir)
            assert source.url is not None
            path = copy_path(state_dir or default_state_dir(), source.url)
        else:
            for key in URL_ONLY_KEYS:
                if key in fields:
                    doc.fail(
                        fields[key][0],
                        f"{key} is only read for a list with a url:; remove it or use url:",
                    )
            file_node = fields["file"][1]
            file_text = read_text(doc, file_node, "file", required=True).strip()
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
            ref = ListRef(path, fmt, line, column)
        else:
            ref = _csv_list(doc, item, fields, path, line, column, source.url is None)
        out.append(
            replace(
                ref,
                match=match,
                url=source.url,
                refresh=source.refresh,
                sha256=source.sha256,
                ca_file=source.ca_file,
            )
        )
    return out


def _match(doc: Doc, fields: Keys, fmt: str) -> str:
    if "match" not in fields:
        return ""
    node = fields["match"][1]
    match = read_text(doc, node, "match", required=True).strip().lower()
    if match not in MATCHES:
        doc.fail(
            node,
            f"match must be subtree (the name and every name under it) or exact (the name "
            f"alone), not {quote(match)}",
        )
    if fmt == "adblock" and match == "exact":
        doc.fail(
            node,
            "an adblock rule ||name^ covers the name and every name under it by definition; "
            "remove match: exact (or use format: domains or hosts for names alone)",
        )
    return match


@dataclass(frozen=True, slots=True)
class _Source:
    url: str | None
    refresh: float
    sha256: str | None
    ca_file: Path | None


def _url_source(doc: Doc, fields: Keys, base_dir: Path) -> _Source:
    """The url:, refresh:, sha256: and ca_file: of a fetched list, checked."""
    node = fields["url"][1]
    url = read_text(doc, node, "url", required=True).strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        doc.fail(node, f"url {quote(url)} is not a web address ({exc})")
    if parts.scheme.lower() != "https":
        doc.fail(
            node,
            f"url {quote(url)} must start with https:// (lists are fetched over HTTPS only, "
            "so nobody on the way can change them)",
        )
    if not host:
        doc.fail(node, f"url {quote(url)} has no host name, like https://lists.example/ads.txt")
    if parts.username is not None or parts.password is not None:
        doc.fail(
            node,
            f"url {quote(url)} carries a user name or password; they would be written to the "
            "logs: use an address without them",
        )
    refresh = DEFAULT_REFRESH
    if "refresh" in fields:
        refresh_node = fields["refresh"][1]
        text = read_text(doc, refresh_node, "refresh", required=True)
        seconds = parse_duration(text)
        if seconds is None or not MIN_REFRESH <= seconds <= MAX_REFRESH:
            doc.fail(
                refresh_node,
                f"refresh must be a time between 1s and 366d, like 12h, 30m, 1d or 1h30m, "
                f"not {quote(text)}",
            )
        refresh = seconds
    pin = None
    if "sha256" in fields:
        pin_node = fields["sha256"][1]
        pin = read_text(doc, pin_node, "sha256", required=True).strip().lower()
        if not _SHA256.fullmatch(pin):
            doc.fail(
                pin_node,
                f"sha256 must be 64 hexadecimal digits (what sha256sum prints for the list), "
                f"not {quote(pin)}",
            )
    ca_file = None
    if "ca_file" in fields:
        ca_node = fields["ca_file"][1]
        ca_file = Path(read_text(doc, ca_node, "ca_file", required=True).strip())
        if not ca_file.is_absolute():
            ca_file = base_dir / ca_file
        problem = files.file_problem(ca_file)
        if problem is not None:
            doc.fail(ca_node, f"ca_file {quote(str(ca_file))}: {problem}; check the path")
    return _Source(url, refresh, pin, ca_file)


def _csv_list(
    doc: Doc,
    item: yaml.Node,
    fields: Keys,
    path: Path,
    line: int,
    column: int,
    local: bool = True,
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
        csv_column = read_text(doc, column_node, "column", required=True).strip()
    delimiter = ","
    if "delimiter" in fields:
        delimiter = read_text(doc, fields["delimiter"][1], "delimiter", required=True)
        if len(delimiter) != 1:
            doc.fail(
                fields["delimiter"][1],
                f"delimiter must be one character, such as ';', not {quote(delimiter)} "
                '(for a tab write "\\t" in double quotes)',
            )
    encoding = "utf-8"
    if "encoding" in fields:
        encoding = read_text(doc, fields["encoding"][1], "encoding", required=True).strip()
        try:
            codecs.lookup(encoding)
        except LookupError:
            doc.fail(
                fields["encoding"][1],
                f"unknown encoding {quote(encoding)}; use a name such as utf-8, cp1251 or latin-1",
            )
    skip_rows = doc.integer(fields["skip_rows"][1], "skip_rows", 0) if "skip_rows" in fields else 0
    if isinstance(csv_column, str) and local:  # a fetched list's copy may not exist yet
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
