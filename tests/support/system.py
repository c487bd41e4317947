"""The ``system`` marker: tests that run programs from Debian packages (``support.tools``).

``@pytest.mark.system("named", "nsupdate")`` names every program a test runs. Before the
test and its fixtures start, each is looked up: when one is missing the test is skipped
with the package to install, or fails under CI. ``program(name)`` hands out a program's
path only to a test that declared it, so a marker cannot fall behind the code it guards.

Outside CI the skip is a skip mark added at collection, so ``-ra`` reports it at the test.
``tests/conftest.py`` imports the hooks below; they work as a plugin too (``-p support.system``).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest
from support import tools

MARK = "system"


class _Running:
    """The programs the running test declared (set before each test)."""

    test = ""
    programs: frozenset[str] = frozenset()


def declared(item: pytest.Item) -> tuple[str, ...]:
    """Every program named by the ``system`` markers on ``item`` and its module or class."""
    programs: list[str] = []
    for mark in item.iter_markers(MARK):
        programs += [p for p in mark.args if isinstance(p, str) and p not in programs]
    return tuple(programs)


def give_up(missing: tools.Missing) -> NoReturn:
    if missing.fail:
        pytest.fail(missing.message, pytrace=False)
    pytest.skip(missing.message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Outside CI, a test whose programs are missing is marked skipped (reported at the test)."""
    if tools.strict(os.environ):
        return
    for item in items:
        programs = declared(item)
        missing = None if tools.unknown(programs) else tools.check(programs, os.environ)
        if missing is not None:
            item.add_marker(pytest.mark.skip(reason=missing.message))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's fixtures (and after skip marks): check the marker and its programs."""
    _Running.test = item.nodeid
    _Running.programs = frozenset()
    for mark in item.iter_markers(MARK):
        if not mark.args or mark.kwargs or not all(isinstance(a, str) for a in mark.args):
            pytest.fail(
                f"{item.nodeid}: write @pytest.mark.{MARK}(program, ...) with the programs it runs",
                pytrace=False,
            )
    programs = declared(item)
    unknown = tools.unknown(programs)
    if unknown:
        pytest.fail(
            f"{item.nodeid}: no Debian package known for {', '.join(unknown)}: "
            "add it to PACKAGES in tests/support/tools.py",
            pytrace=False,
        )
    missing = tools.check(programs, os.environ)
    if missing is not None:
        give_up(missing)
    _Running.programs = frozenset(programs)


def program(name: str) -> str:
    """The path of ``name``, for a test marked ``system(name, ...)``."""
    if name not in _Running.programs:
        pytest.fail(
            f"{_Running.test or 'code outside a test'} runs {name} "
            f"but is not marked @pytest.mark.{MARK}({name!r})",
            pytrace=False,
        )
    found = tools.locate(name)
    if found is None:  # removed since the test started
        give_up(tools.Missing((name,), tools.strict(os.environ)))
    return found
