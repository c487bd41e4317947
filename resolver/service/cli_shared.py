"""What every `sinkhole` subcommand shares: its configuration, how a file that does not
load is reported, and how a subcommand's --help is laid out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from resolver.core.errors import SourceError
from resolver.sources.config import Config, default_config, load_config


def config_of(args: argparse.Namespace) -> tuple[Config, Path | None]:
    """The configuration --config names (and its resolved path), or the built-in one."""
    if args.config:
        path = Path(args.config)
        return load_config(path), path.resolve()
    return default_config(), None


def print_errors(exc: SourceError) -> None:
    """``file:line:col: error: message`` on stderr for every error ``exc`` stands for."""
    from resolver.tools.diagnostics import errors_of

    for diagnostic in errors_of(exc):
        print(diagnostic.text(), file=sys.stderr)


def load_failed(exc: SourceError, what: str) -> int:
    """Report a file that does not load; the exit status for it."""
    print_errors(exc)
    print(f"sinkhole: {what}; `sinkhole check` lists every error", file=sys.stderr)
    return 2


def command(
    sub: Any, name: str, summary: str, description: str, example: str
) -> argparse.ArgumentParser:
    """A subcommand whose --help gives a paragraph on what it does and an example."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog="example:\n" + example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser
