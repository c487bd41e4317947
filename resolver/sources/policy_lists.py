"""The third-party lists a policy file references (``lists:``): where they are and how to
read them. Reading them is resolver.sources.lists's work."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import yaml

from resolver.core.errors import PolicyError, quote
from resolver.sources import files
from resolver.sources.lists import FORMATS, csv_header, find_column
from resolver.sources.yamlsource import Doc
from resolver.sources.yamlvalues import Keys, read_text

LIST_KEYS = frozenset({"file", "format", "column", "delimiter", "encoding", "skip_rows"})
CSV_ONLY_KEYS = ("column", "delimiter", "encoding", "skip_rows")


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


def read_lists(doc: Doc, node: yaml.Node, base_dir: Path) -> list[ListRef]:
    """The lists under ``lists:``; each file must exist (a csv list's header is checked)."""
    out = []
    for item in doc.sequence(node, "lists", allow_scalar=False):
        if isinstance(item, yaml.ScalarNode):
            doc.fail(item, "an entry of lists must be a mapping, like {file: lists/ads.txt}")
        fields = doc.mapping(item, "an entry of lists")
        doc.reject_unknown(fields, LIST_KEYS, "an entry of lists")
        if "file" not in fields:
            doc.fail(item, "an entry of lists needs a file: key, like file: lists/ads.txt")
        file_node = fields["file"][1]
        file_text = read_text(doc, file_node, "file", required=True).strip()
        fmt = "domains"
        if "format" in fields:
            fmt = read_text(doc, fields["format"][1], "format", required=True).strip().lower()
            if fmt not in FORMATS:
                doc.fail(
                    fields["format"][1],
                    f"format must be one of {', '.join(FORMATS)}, not {quote(fmt)}",
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
