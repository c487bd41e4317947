"""What ``sinkhole check`` finds: diagnostics with their file, line and column, and the result
of one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from resolver.core.errors import SourceError
from resolver.sources.config import Config
from resolver.sources.policy_yaml import PolicyFile
from resolver.sources.rules import Rule


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int
    column: int
    severity: str  # error | warning
    message: str

    def text(self) -> str:
        """``file:line:col: severity: message``; ``file: severity: message`` for a whole file
        (one that cannot be read, say)."""
        return f"{where(self.file, self.line, self.column)}: {self.severity}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "severity": self.severity,
            "message": self.message,
        }


def where(file: str, line: int, column: int) -> str:
    """``file:line:col``, or ``file`` when the line is not known."""
    return f"{file}:{line}:{column}" if line else file


def error_of(exc: SourceError) -> Diagnostic:
    return Diagnostic(exc.source, exc.line, exc.column, "error", exc.message)


def errors_of(exc: SourceError) -> list[Diagnostic]:
    """Every error ``exc`` stands for (a configuration file reports all it found)."""
    found: list[SourceError] = getattr(exc, "errors", None) or [exc]
    return [error_of(e) for e in found]


@dataclass
class CheckResult:
    config: Config | None = None
    policies: list[PolicyFile] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    names: int = 0  # distinct names the compiled policy would hold
    list_names: dict[str, int] = field(default_factory=dict)  # per policy id
    list_modes: dict[str, int] = field(default_factory=dict)  # distinct list names per match

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def error(self, file: str, line: int, column: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(file, line, column, "error", message))

    def warn(self, file: str, line: int, column: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(file, line, column, "warning", message))

    def warn_at(self, rule: Rule, message: str) -> None:
        self.warn(rule.file, rule.line, rule.column, message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.errors,
            "config": self.config.source if self.config else None,
            "errors": [d.as_dict() for d in self.errors],
            "warnings": [d.as_dict() for d in self.warnings],
            "policies": [
                {
                    "id": p.info.id,
                    "file": p.info.source,
                    "sha256": p.sha256,
                    "entries": len(p.entries),
                    "list_names": self.list_names.get(p.info.id, 0),
                }
                for p in self.policies
            ],
            "names": self.names,
            "list_names_by_match": self.list_modes,
        }


def plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
