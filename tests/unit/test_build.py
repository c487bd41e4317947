"""The build under test is the one asked for: SINKHOLE_MYPYC=1 (setup.py) compiles the
core's hot modules, and without it no module is compiled, so that neither CI run tests
the other build by mistake (a stale extension module beside its .py file would be
imported instead of the source)."""

import os
import subprocess
import sys

import resolver
from resolver.core import cache, outbound, rewrite, wire

HOT = {"cache", "outbound", "rewrite", "wire"}


def test_the_compiled_modules_are_those_of_the_build_asked_for() -> None:
    compiled = set(resolver.compiled_modules())
    if os.environ.get("SINKHOLE_MYPYC") == "1":
        assert compiled == HOT
        assert all(not str(m.__file__).endswith(".py") for m in (cache, outbound, rewrite, wire))
    else:
        assert compiled == set()
        assert all(str(m.__file__).endswith(".py") for m in (cache, outbound, rewrite, wire))


def test_version_names_the_compiled_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "resolver", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out.startswith(f"sinkhole {resolver.__version__}")
    assert ("compiled: cache, outbound, rewrite, wire" in out) == bool(resolver.compiled_modules())
