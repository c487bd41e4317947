"""Fixtures of the black-box suite: a shared server running the standard test policies."""

from __future__ import annotations

import pytest
from support.procs import Sinkhole, SinkholeFactory

from blackbox.standard import POLICIES


@pytest.fixture(scope="session")
def standard(session_sinkhole_factory: SinkholeFactory) -> Sinkhole:
    """A server on 127.0.0.1 and [::1] with the standard policies, shared by read-only tests."""
    return session_sinkhole_factory(POLICIES, ipv6=True)
