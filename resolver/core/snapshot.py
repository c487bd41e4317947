"""What a reload replaces: the compiled policy and what it was built from (pure).

A record of its own, outside the compiled modules (setup.py): the shared image of a
build is pickled, and a compiled class cannot be.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolver.core.matcher import CompiledPolicy
from resolver.core.verdict import PolicyInfo


@dataclass(frozen=True)
class Snapshot:
    """Everything a reload replaces, built off the hot path and swapped as one reference."""

    policy: CompiledPolicy
    policies: tuple[PolicyInfo, ...] = ()
    sources: tuple[str, ...] = ()
