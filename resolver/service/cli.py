"""The `sinkhole` command line."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resolver import __version__
from resolver.core.errors import SourceError
from resolver.sources.config import Config, default_config, load_config


def _config(args: argparse.Namespace) -> tuple[Config, Path | None]:
    if args.config:
        path = Path(args.config)
        return load_config(path), path.resolve()
    return default_config(), None


def _load_failed(exc: SourceError, what: str) -> int:
    """Report a file that does not load; the exit status for it."""
    print(f"{exc.source}:{exc.line}:{exc.column}: error: {exc.message}", file=sys.stderr)
    print(f"sinkhole: {what}; `sinkhole check` lists every error", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    from resolver.service.app import run_server

    try:
        config, path = _config(args)
    except SourceError as exc:
        print(f"sinkhole: {exc}", file=sys.stderr)
        return 2
    worker = None
    if args.worker:
        slot, _, fd = args.worker.partition(":")
        worker = (int(slot), int(fd))
    return run_server(config, path, worker)


def cmd_check(args: argparse.Namespace) -> int:
    from resolver.tools.check import render_text, run_check

    result = run_check(Path(args.config) if args.config else None)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        for line in render_text(result):
            print(line)
    return 1 if result.errors else 0


def cmd_explain(args: argparse.Namespace) -> int:
    from resolver.core.codes import type_code
    from resolver.tools import explain

    try:
        config, _ = _config(args)
        qtype = type_code(args.type)
        client = explain.parse_client(args.client)
        now = _moment(args.at)
        policies, compiled = explain.build(config, now)
        result = explain.explain(config, policies, compiled, args.name, qtype, client, now)
    except SourceError as exc:
        return _load_failed(exc, "the policies do not load")
    except ValueError as exc:
        print(f"sinkhole: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        for line in explain.render_text(result):
            print(line)
    return 0 if result.consistent else 1


def cmd_diff(args: argparse.Namespace) -> int:
    from resolver.sources.snapshot import build_snapshot
    from resolver.tools import diff
    from resolver.tools.control import ControlError

    try:
        config, _ = _config(args)
        result = build_snapshot(config)
    except SourceError as exc:
        return _load_failed(exc, "the new files do not load")
    server = args.server or (f"http://{config.control}" if config.control else "")
    if not server:
        print(
            "sinkhole: no control endpoint to ask: set control: in the configuration "
            "(such as 127.0.0.1:9154) or pass --server http://127.0.0.1:9154",
            file=sys.stderr,
        )
        return 2
    if "://" not in server:
        server = "http://" + server
    try:
        found = diff.diff(config, result, server)
    except ControlError as exc:
        print(f"sinkhole: {exc}", file=sys.stderr)
        return 2
    limit = None if args.all else diff.SHOWN
    if args.json:
        print(json.dumps(found.as_dict(limit), indent=2))
    else:
        for line in diff.render_text(found, config.source, limit):
            print(line)
    return 0 if found.empty else 1


def cmd_verify(args: argparse.Namespace) -> int:
    import asyncio

    from resolver.sources.config import parse_endpoint
    from resolver.sources.snapshot import build_snapshot
    from resolver.tools import verify

    try:
        server = parse_endpoint(args.server, 53)
    except ValueError as exc:
        print(
            f"sinkhole: --server {args.server!r} is not an address like 127.0.0.1:53 ({exc})",
            file=sys.stderr,
        )
        return 2
    if args.qps <= 0 or args.timeout <= 0 or (args.sample is not None and args.sample < 1):
        print("sinkhole: --qps, --timeout and --sample must be positive", file=sys.stderr)
        return 2
    try:
        config, _ = _config(args)
        result = build_snapshot(config)
        client = explain_client(args.client) if args.client else verify.local_address(server)
    except SourceError as exc:
        return _load_failed(exc, "the policies do not load")
    except (ValueError, OSError) as exc:
        print(f"sinkhole: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    compiled = result.snapshot.policy
    compiled.set_clock(now)
    probes, report = verify.plan(
        config,
        list(result.policies),
        [r.listed for r in result.reports],
        compiled,
        client,
        now,
        args.sample,
        args.seed,
    )
    report.server = str(server)
    junit = verify.JUnit(Path(args.junit)) if args.junit else None
    checks = len(probes) * len(verify.TYPES) * len(verify.TRANSPORTS)
    progress = verify.Progress(checks, args.progress or sys.stderr.isatty())
    try:
        asyncio.run(
            verify.run(
                server, probes, report, args.qps, args.timeout, junit=junit, progress=progress
            )
        )
    except BaseException:
        if junit is not None:
            junit.abandon()
        raise
    if junit is not None:
        junit.close(f"sinkhole verify {server}", report.seconds)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for line in verify.render_text(report):
            print(line)
    return 1 if report.violations else 0


def explain_client(text: str) -> Any:
    from resolver.tools.explain import parse_client

    return parse_client(text)


def _moment(text: str | None) -> datetime:
    """--at: an ISO 8601 date or time (UTC when no offset is given); now when absent."""
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--at {text!r} is not a date like 2026-01-31 or 2026-01-31T12:00Z"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sinkhole", description="A DNS sinkhole resolver: blocked names get a warning page."
    )
    parser.add_argument("--version", action="version", version=f"sinkhole {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the resolver")
    serve.add_argument(
        "--config", "-c", help="configuration file (default: built-in, loopback port 5353)"
    )
    serve.add_argument("--worker", help=argparse.SUPPRESS)  # SLOT:FD, set by the supervisor
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate the configuration and every policy, then exit")
    check.add_argument("--config", "-c", help="configuration file (default: built-in)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_check)

    explain = sub.add_parser(
        "explain", help="show which entry decides a query, and the answer it gets"
    )
    explain.add_argument("name", help="the query name")
    explain.add_argument("--type", "-t", default="A", help="query type (default: A)")
    explain.add_argument(
        "--client", help="client address (default: one in no network the policies name)"
    )
    explain.add_argument("--at", help="explain at this date and time (default: now)")
    explain.add_argument("--config", "-c", help="configuration file (default: built-in)")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(func=cmd_explain)

    diff = sub.add_parser(
        "diff",
        help="show what a reload would change against the running server "
        "(exit 0: nothing, 1: changes, 2: trouble)",
    )
    diff.add_argument("--config", "-c", help="configuration file (default: built-in)")
    diff.add_argument(
        "--server", help="the server's control endpoint (default: control: in the config)"
    )
    diff.add_argument("--all", action="store_true", help=f"list every name, not the first {50}")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(func=cmd_diff)

    verify = sub.add_parser(
        "verify",
        help="check that a resolver (any resolver) enforces the policies: exit 1 on a violation",
    )
    verify.add_argument("--server", required=True, help="the resolver to check, HOST:PORT")
    verify.add_argument(
        "--config", "-c", help="configuration with the policies (default: built-in)"
    )
    verify.add_argument("--sample", type=int, help="check a random sample of N names")
    verify.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    verify.add_argument(
        "--qps", type=float, default=200.0, help="queries per second (default: 200)"
    )
    verify.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for one answer (default: 2)"
    )
    verify.add_argument(
        "--client", help="the address the server sees us as, for client scopes (default: ours)"
    )
    verify.add_argument("--junit", help="write JUnit XML to this file")
    verify.add_argument("--progress", action="store_true", help="show progress on stderr")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=cmd_verify)

    export = sub.add_parser(
        "export-rpz", help="write the YAML policies as one RPZ zone on stdout (BIND, Unbound ...)"
    )
    export.add_argument(
        "--config", "-c", help="configuration with the policies (default: built-in)"
    )
    export.add_argument(
        "--origin", default="rpz.sinkhole.invalid", help="the zone's name (default: %(default)s)"
    )
    export.set_defaults(func=cmd_export_rpz)
    return parser


def cmd_export_rpz(args: argparse.Namespace) -> int:
    from resolver.tools.export import cmd_export_rpz as export

    return export(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve" and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `sinkhole diff | head` ends quietly
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
