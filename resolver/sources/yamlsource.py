"""YAML read with the position of every value, so errors name the file, line and column."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, NoReturn

import yaml

from resolver.core.errors import SourceError, quote

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

LOADER: Any = _Loader  # the loader every policy and configuration file is read with

ErrorType = Callable[[str, str, int, int], SourceError]


class Doc:
    """One YAML file: its node tree and the error type to raise for it."""

    def __init__(self, text: str, source: str, error: ErrorType) -> None:
        self.source = source
        self.error = error
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = yaml_mark(exc)
            line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            raise error(yaml_hint(exc, text), source, line, col) from None
        except yaml.YAMLError as exc:
            raise error(f"not valid YAML: {exc}", source, 0, 0) from None
        self.root: yaml.Node | None = root
        # A constructor of this file's own: construct_object remembers every node it
        # built, so a shared one would keep every file ever read in memory.
        self._construct = yaml.SafeLoader("").construct_object

    def fail(self, node: yaml.Node | None, message: str) -> NoReturn:
        if node is None:
            raise self.error(message, self.source, 0, 0)
        mark = node.start_mark
        raise self.error(message, self.source, mark.line + 1, mark.column + 1)

    def mapping(self, node: yaml.Node | None, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Keys (strings) to (key node, value node); duplicate keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping of keys to values")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                self.fail(key_node, f"keys in {what} must be words, not {quote(key)}")
            if key in out:
                self.fail(key_node, f"key {quote(key)} appears twice in {what}")
            out[key] = (key_node, value_node)
        return out

    def sequence(self, node: yaml.Node, what: str, allow_scalar: bool = True) -> list[yaml.Node]:
        """A list; a single scalar counts as a list of one when ``allow_scalar``."""
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if allow_scalar and isinstance(node, yaml.ScalarNode) and self.value(node) is not None:
            return [node]
        if isinstance(node, yaml.ScalarNode) and self.value(node) is None:
            return []
        self.fail(node, f"{what} must be a list")

    def value(self, node: yaml.Node) -> Any:
        """The value of a node; one YAML cannot build (2026-13-01, a !!tag) is an error."""
        try:
            return self._construct(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.fail(node, f"cannot read this value ({problem}); write plain text or a number")
        except ValueError as exc:
            if node.tag.endswith(":timestamp"):
                self.fail(
                    node,
                    f"{node.value} is not a valid date ({exc}); "
                    "write dates as year-month-day, like 2026-01-01",
                )
            if not isinstance(node, yaml.ScalarNode):  # its value is nodes, maybe nested aliases
                self.fail(node, f"cannot read this value ({exc})")
            self.fail(node, f"cannot read {quote(node.value)} ({exc})")

    def string(self, node: yaml.Node, what: str) -> str:
        value = self.value(node)
        if isinstance(value, bool) or value is None or isinstance(value, list | dict):
            self.fail(node, f"{what} must be text, not {describe(value)}")
        return str(value)

    def integer(self, node: yaml.Node, what: str, low: int = 0, high: int | None = None) -> int:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(node, f"{what} must be a whole number, not {describe(value)}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            self.fail(node, f"{what} must be {bound}, not {value}")
        return value

    def number(self, node: yaml.Node, what: str, low: float = 0.0) -> float:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, f"{what} must be a number, not {describe(value)}")
        if value < low:
            self.fail(node, f"{what} must be at least {low}, not {value}")
        return float(value)

    def reject_unknown(
        self,
        keys: dict[str, tuple[yaml.Node, yaml.Node]],
        known: set[str] | frozenset[str],
        what: str,
    ) -> None:
        """Fail at the first key not in ``known``, naming the closest known key if any."""
        for key, (key_node, _) in keys.items():
            if key not in known:
                choices = sorted(known)
                close = difflib.get_close_matches(key.replace("-", "_").lower(), choices, 1, 0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(
                    key_node,
                    f"unknown key {quote(key)} in {what}{hint} (known keys: {', '.join(choices)})",
                )


def describe(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return quote(value)


def yaml_mark(exc: yaml.MarkedYAMLError) -> Any:
    """Where to point for the parser's complaint: at the line that lacks a ':' (the
    parser notices only at the next line, or at the end of the file), else where it stopped."""
    if "simple key" in (exc.context or "") and exc.context_mark is not None:
        return exc.context_mark
    return exc.problem_mark


def yaml_hint(exc: yaml.MarkedYAMLError, text: str = "") -> str:
    """The YAML parser's complaint, with the fix for traps people fall into."""
    problem = exc.problem or str(exc)
    context = exc.context or ""
    mark = exc.problem_mark
    at = text[mark.index] if mark is not None and 0 <= mark.index < len(text) else ""
    if "alias" in problem or "alias" in context:
        return (
            f"not valid YAML ({problem}): a value starting with '*' is read as a YAML alias; "
            'put it in quotes, e.g. "*.example.com"'
        )
    if at == "\t" or "'\\t'" in problem:
        return f"not valid YAML ({problem}): indent with spaces, not tabs"
    if "simple key" in context and exc.context_mark is not None:
        return _missing_colon(exc.context_mark, text)
    if "block collection" in context and exc.context_mark is not None:
        return (
            f"not valid YAML ({problem}): this line continues the list that begins on line "
            f"{exc.context_mark.line + 1}; start it with '- ' to make it an item of that list, "
            "or indent it less to end the list"
        )
    if "flow" in context and exc.context_mark is not None:
        opened = exc.context_mark
        return (
            f"not valid YAML ({problem}): the {text[opened.index : opened.index + 1]!r} on line "
            f"{opened.line + 1} is not closed, or an item in it needs quotes"
        )
    if "mapping values are not allowed" in problem:
        return (
            f"not valid YAML ({problem}): a ':' here starts a key where none can be; check "
            "this line's indentation against the line above, or put the value in quotes"
        )
    return f"not valid YAML: {problem}"


def _missing_colon(mark: Any, text: str) -> str:
    """The message for a line that is neither ``key: value`` nor ``- item``."""
    lines = text.splitlines()
    line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
    written = line[mark.column :].strip()
    number = mark.line + 1
    above = [t for t in lines[: mark.line] if t.strip() and not t.lstrip().startswith("#")]
    if above and above[-1].lstrip().startswith("- ") and _indent(above[-1]) == mark.column:
        return (
            f"not valid YAML: line {number} ({quote(written)}) is in the middle of a list; "
            f"start it with '- ' to make it an item, like '- {written}'"
        )
    key, _, rest = written.partition(" ")
    fix = f"; write it as {quote(f'{key}: {rest.strip()}')}" if rest.strip() else ""
    return (
        f"not valid YAML: line {number} may be missing a ':' after the key "
        f"({quote(written)} is not 'key: value'){fix}"
    )


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))
