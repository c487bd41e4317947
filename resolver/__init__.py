"""sinkhole: a DNS sinkhole resolver."""

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

__version__ = "0.1.0"
_SUFFIXES = tuple(EXTENSION_SUFFIXES)  # .cpython-311-x86_64-linux-gnu.so, .abi3.so, .so


def compiled_modules() -> list[str]:
    """The modules of ``resolver.core`` that load from compiled extensions (the optional
    mypyc build, setup.py); empty for the pure Python package. An extension module
    beside a .py file is what Python imports."""
    core = Path(__file__).parent / "core"
    names = {path.name.split(".")[0] for path in core.iterdir() if path.name.endswith(_SUFFIXES)}
    names.discard("native__mypyc")  # the shared part of the compiled modules
    return sorted(names)


def version_text() -> str:
    """``sinkhole VERSION``, and which modules are compiled when any are."""
    compiled = compiled_modules()
    return f"sinkhole {__version__}" + (f" (compiled: {', '.join(compiled)})" if compiled else "")
