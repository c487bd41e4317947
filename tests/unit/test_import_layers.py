"""The pure modules stay pure: no event loop, sockets, signals or structlog, even indirectly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "resolver"
PURE = (
    "errors",
    "wire",
    "tcpframe",
    "names",
    "policy",
    "cache",
    "engine",
    "lists",
    "policy_yaml",
    "config",
    "yamlsource",
)
FORBIDDEN = frozenset({"asyncio", "socket", "signal", "structlog"})


def imports_of(module: str) -> set[str]:
    """Every module named by an import statement anywhere in ``resolver/<module>.py``."""
    return imports_in((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


def imports_in(source: str) -> set[str]:
    """Every module an import statement names, at any depth (functions, try blocks)."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y
                base = "resolver" + (f".{node.module}" if node.module else "")
                found.add(base)
                if not node.module:
                    found.update(f"resolver.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
                if node.module == "resolver":
                    found.update(f"resolver.{alias.name}" for alias in node.names)
    return found


def closure(module: str) -> dict[str, set[str]]:
    """The imports of ``module`` and of every resolver module it reaches, by module."""
    seen: dict[str, set[str]] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = imports_of(name)
        for imported in seen[name]:
            if imported.startswith("resolver."):
                sub = imported.split(".")[1]
                if (PACKAGE / f"{sub}.py").is_file():
                    todo.append(sub)
    return seen


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_machinery(module: str) -> None:
    offenders = {
        f"resolver/{name}.py imports {imported}"
        for name, imports in closure(module).items()
        for imported in imports
        if imported.split(".")[0] in FORBIDDEN
    }
    assert not offenders, sorted(offenders)


def test_the_walker_sees_every_kind_of_import() -> None:
    source = (
        "import os.path\n"
        "def f():\n"
        "    import asyncio\n"
        "    from socket import socket\n"
        "try:\n"
        "    import structlog as log\n"
        "except ImportError:\n"
        "    pass\n"
        "from . import upstream\n"
        "from .server import serve\n"
        "from resolver import app\n"
    )
    assert imports_in(source) == {
        "os.path",
        "asyncio",
        "socket",
        "structlog",
        "resolver",
        "resolver.upstream",
        "resolver.server",
        "resolver.app",
    }


def test_every_pure_module_exists() -> None:
    for module in PURE:
        assert (PACKAGE / f"{module}.py").is_file(), module


def test_closure_follows_resolver_imports() -> None:
    reached = closure("engine")
    assert {"engine", "wire", "cache", "policy", "errors"} <= set(reached)
