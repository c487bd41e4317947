"""The build under test is the one asked for: SINKHOLE_MYPYC=1 (setup.py) compiles the
core's hot modules, and without it no module is compiled, so that neither CI run tests
the other build by mistake (a stale extension module beside its .py file would be
imported instead of the source)."""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import resolver

SETUP = Path(__file__).parents[2] / "setup.py"


def compiled_by_setup() -> list[str]:
    """The modules setup.py compiles (its COMPILED list)."""
    for node in ast.parse(SETUP.read_text()).body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COMPILED":
            names: list[str] = ast.literal_eval(node.value)
            return sorted(names)
    raise AssertionError("setup.py has no COMPILED list")


def test_the_compiled_modules_are_those_of_the_build_asked_for() -> None:
    expected = compiled_by_setup() if os.environ.get("SINKHOLE_MYPYC") == "1" else []
    assert resolver.compiled_modules() == expected
    for name in compiled_by_setup():
        module = importlib.import_module(f"resolver.core.{name}")
        assert str(module.__file__).endswith(".py") == (not expected)


def test_version_names_the_compiled_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "resolver", "--version"], capture_output=True, text=True, check=True
    ).stdout
    compiled = resolver.compiled_modules()
    suffix = f" (compiled: {', '.join(compiled)})" if compiled else ""
    assert " ".join(out.split()) == f"sinkhole {resolver.__version__}{suffix}"  # argparse wraps
