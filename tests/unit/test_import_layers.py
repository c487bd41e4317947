"""The package's shape, enforced: one-way imports between its subpackages, a pure core.

Layers, from the bottom: ``core`` (the query path: bytes in, bytes out) imports only the
standard library; ``sources`` (policy files, lists, zones, the configuration) and ``edge``
(sockets) build on ``core``; ``zones`` (following zones from a primary) on ``sources``;
``tools`` (check, explain, diff, verify, export, control) on ``sources`` and ``zones``;
``service`` (the composition root) wires everything and nothing imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "resolver"
SUBPACKAGES = ("core", "edge", "sources", "zones", "tools", "service")

# What each subpackage may import from the others (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "edge": frozenset({"core"}),
    "sources": frozenset({"core"}),
    "zones": frozenset({"core", "sources"}),
    "tools": frozenset({"core", "sources", "zones"}),
    "service": frozenset({"core", "edge", "sources", "zones", "tools"}),
}
# The pure core: no event loop, sockets, signals, logging, clock or DNS library.
CORE_FORBIDDEN = frozenset({"asyncio", "socket", "signal", "structlog", "time", "dnslib", "dns"})
# Modules outside core that must stay free of I/O machinery as well.
PURE_SOURCES = (
    "names",
    "lists",
    "policy_yaml",
    "policy_entries",
    "policy_lists",
    "listcopy",
    "config",
    "config_sections",
    "yamlsource",
    "yamlvalues",
)
IO_MACHINERY = frozenset({"asyncio", "socket", "signal", "structlog"})


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_in(source: str, module: str = "resolver") -> set[str]:
    """Every module an import statement names, at any depth (functions, try blocks)."""
    package = module.rsplit(".", 1)[0] if "." in module else module
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from .x import y
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = base + (f".{node.module}" if node.module else "")
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif node.module:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def resolver_imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules that ``module`` imports."""
    names = imports_in(path.read_text(encoding="utf-8"), module)
    return {n for n in names if n in known and n != "resolver" and n != module}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in SUBPACKAGES else None


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: resolver_imports(m, p, known) for m, p in known.items()}


def test_every_module_lives_in_a_subpackage() -> None:
    loose = [
        m
        for m in modules()
        if m not in {"resolver", "resolver.__main__"} and m.split(".")[1] not in SUBPACKAGES
    ]
    assert not loose, loose


def test_imports_point_one_way() -> None:
    offenders = []
    for module, imported in graph().items():
        here = layer(module)
        if here is None:
            continue
        for target in imported:
            there = layer(target)
            if there is not None and there != here and there not in ALLOWED[here]:
                offenders.append(f"{module} imports {target} ({here} -> {there})")
    assert not offenders, offenders


def test_no_import_cycles() -> None:
    edges = graph()
    # Only module-level package edges: a package __init__ importing nothing is the rule.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def closure(module: str) -> dict[str, set[str]]:
    """The imports of ``module`` and of every package module it reaches, by module."""
    known = modules()
    seen: dict[str, set[str]] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = imports_in(known[name].read_text(encoding="utf-8"), name)
        todo.extend(n for n in seen[name] if n in known and n != "resolver")
    return seen


@pytest.mark.parametrize("module", sorted(m for m in modules() if layer(m) == "core"))
def test_core_is_pure(module: str) -> None:
    offenders = {
        f"{name} imports {imported}"
        for name, imports in closure(module).items()
        for imported in imports
        if imported.split(".")[0] in CORE_FORBIDDEN
    }
    assert not offenders, sorted(offenders)


@pytest.mark.parametrize("module", PURE_SOURCES)
def test_policy_sources_do_no_io_machinery(module: str) -> None:
    offenders = {
        f"{name} imports {imported}"
        for name, imports in closure(f"resolver.sources.{module}").items()
        for imported in imports
        if imported.split(".")[0] in IO_MACHINERY
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
        "from .. import core\n"
        "from resolver.service import app\n"
    )
    found = imports_in(source, "resolver.edge.server")
    assert {
        "os.path",
        "asyncio",
        "socket",
        "structlog",
        "resolver.edge.upstream",
        "resolver.core",
        "resolver.service.app",
    } <= found


def test_the_layer_check_can_fail() -> None:
    assert "service" not in ALLOWED["core"]
    assert layer("resolver.core.wire") == "core"
    assert layer("resolver") is None


def test_closure_follows_package_imports() -> None:
    reached = closure("resolver.core.engine")
    assert {"resolver.core.wire", "resolver.core.cache", "resolver.core.matcher"} <= set(reached)
