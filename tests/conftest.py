"""Shared fixtures: the fake upstream and sinkhole server processes, cleaned up on teardown;
and the ``system`` marker's check (tests/support/system.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.procs import FakeUpstream, SinkholeFactory
from support.system import pytest_collection_modifyitems as pytest_collection_modifyitems
from support.system import pytest_runtest_setup as pytest_runtest_setup


@pytest.fixture(scope="session")
def fake_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeUpstream]:
    """One fake upstream for the whole run; tests tell their queries apart by unique names."""
    upstream = FakeUpstream(tmp_path_factory.mktemp("upstream"))
    yield upstream
    upstream.kill()


def _factory(workdir: Path, upstream: FakeUpstream) -> Iterator[SinkholeFactory]:
    factory = SinkholeFactory(workdir, upstream)
    yield factory
    problems = factory.close()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def sinkhole_factory(tmp_path: Path, fake_upstream: FakeUpstream) -> Iterator[SinkholeFactory]:
    """Start servers with a test's own config and policies; each must exit 0 on SIGTERM."""
    yield from _factory(tmp_path, fake_upstream)


@pytest.fixture(scope="session")
def session_sinkhole_factory(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: FakeUpstream
) -> Iterator[SinkholeFactory]:
    """Like sinkhole_factory, for servers shared by many tests."""
    yield from _factory(tmp_path_factory.mktemp("shared"), fake_upstream)
