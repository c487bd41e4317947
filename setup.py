"""The optional compiled build: with SINKHOLE_MYPYC=1 the pure core modules that every
query runs through are compiled to C extension modules with mypyc (it ships with mypy).
Without it (the default) the package is pure Python, as pyproject.toml describes it.

    pip install mypy setuptools
    SINKHOLE_MYPYC=1 pip install --no-build-isolation -e .
"""

import os

from setuptools import setup

# The wire format, upstream replies, the answer cache and 0x20 letter case: pure code
# on every forwarded answer. The rest stays Python (it runs once per query or less).
COMPILED = ["wire", "outbound", "cache", "rewrite"]

ext_modules = []
if os.environ.get("SINKHOLE_MYPYC") == "1":
    from mypyc.build import mypycify

    ext_modules = mypycify(
        [f"resolver/core/{name}.py" for name in COMPILED],
        group_name="resolver.core.native",  # the shared part: resolver/core/native__mypyc
    )

setup(ext_modules=ext_modules)
