"""The optional compiled build: with SINKHOLE_MYPYC=1 the core modules that every query
runs through are compiled to C extension modules with mypyc (it ships with mypy).
Without it (the default) the package is pure Python, as pyproject.toml describes it.

    pip install mypy setuptools wheel
    SINKHOLE_MYPYC=1 pip install --no-build-isolation -e .
"""

import os

from setuptools import setup

# The modules of resolver.core that every query runs through: the wire format, the
# engine and its replay table, tallies, the cache and upstream replies, the client
# checks. Not compiled: the policy matcher and its layers (built with lists that become
# tuples), verdicts and the snapshot (pickled into the shared image), errors (other
# packages subclass them), and everything outside the core (the network edge, loading
# and tools).
COMPILED = [
    "cache",
    "chain",
    "clients",
    "engine",
    "flight",
    "nametable",
    "outbound",
    "outcome",
    "ratelimit",
    "replay",
    "rewrite",
    "screening",
    "tally",
    "wire",
]

ext_modules = []
if os.environ.get("SINKHOLE_MYPYC") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(
        [f"resolver/core/{name}.py" for name in COMPILED],
        group_name="resolver.core.native",  # the shared part: resolver/core/native__mypyc
    )

setup(ext_modules=ext_modules)
