"""The `sinkhole` command line."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from resolver import version_text
from resolver.core.errors import SourceError
from resolver.service.cli_shared import command, config_of, load_failed, print_errors
from resolver.service.cli_verify import add_verify
from resolver.sources.config import Config


def cmd_serve(args: argparse.Namespace) -> int:
    from resolver.service.app import run_server

    try:
        config, path = config_of(args)
    except SourceError as exc:
        print_errors(exc)
        return 2
    if args.worker:
        slot, _, fd = args.worker.partition(":")
        return run_server(config, path, (int(slot), int(fd)))
    # From the pid file on `sinkhole reload` may signal: until the server's own handler is
    # in place, a SIGHUP must not end it (the files are read after it anyway).
    signal.signal(signal.SIGHUP, lambda *_: None)
    from resolver.service.observability import configure_logging, get_logger
    from resolver.service.pidfile import PidFileError, hold

    configure_logging(config.log_level, form=config.log_format)
    try:
        held = hold(config, path, get_logger())
    except PidFileError as exc:
        get_logger().error("pid_file_failed", pid_file=str(exc.path), error=exc.reason)
        return 1
    try:
        return run_server(config, path)
    finally:
        if held:
            held.release()


def cmd_reload(args: argparse.Namespace) -> int:
    from resolver.service import reloading

    if args.timeout <= 0:
        print("sinkhole: --timeout must be positive", file=sys.stderr)
        return 2
    return reloading.run(args.config, args.timeout)


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
        config, _ = config_of(args)
        qtype = type_code(args.type)
        client = explain.parse_client(args.client)
        now = _moment(args.at)
        policies, compiled = explain.build(config, now)
        result = explain.explain(config, policies, compiled, args.name, qtype, client, now)
    except SourceError as exc:
        return load_failed(exc, "the policies do not load")
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
    from resolver.sources.snapshot import build_snapshot, load_policies
    from resolver.tools import diff
    from resolver.tools.control import ControlError
    from resolver.tools.diff_answers import AnswerError
    from resolver.tools.diff_child import ReadInChild, fork_available

    if getattr(args, "whole_process", False):
        # A short-lived process: its million names hold no cycles worth collecting, and
        # each collection would walk the large lists and tables just made.
        gc.disable()
    try:
        config, _ = config_of(args)
    except SourceError as exc:
        return load_failed(exc, "the new files do not load")
    server = args.server or (f"http://{config.control}" if config.control else "")
    if server and "://" not in server:
        server = "http://" + server
    # The running server's entries are read while the files are built, by a child process
    # where one can be forked (else diff reads them when it needs them).
    reading = ReadInChild(server) if server and fork_available() else None
    try:
        policies = load_policies(config)
        if reading is not None:
            reading.send_entries(policies)  # while they are built
        result = build_snapshot(config, policies)
    except SourceError as exc:
        return load_failed(exc, "the new files do not load")
    if not server:
        print(
            "sinkhole: no control endpoint to ask: set control: in the configuration "
            "(such as 127.0.0.1:9154) or pass --server http://127.0.0.1:9154",
            file=sys.stderr,
        )
        return 2
    try:
        dns = _dns_address(args.dns, config)
    except ValueError as exc:
        print(
            f"sinkhole: --dns {args.dns!r} is not an address like 127.0.0.1:53 ({exc})",
            file=sys.stderr,
        )
        return 2
    try:
        found = diff.diff(config, result, server, dns, reading)
    except (ControlError, AnswerError) as exc:
        print(f"sinkhole: {exc}", file=sys.stderr)
        return 2
    limit = None if args.all else diff.SHOWN
    if args.json:
        print(json.dumps(found.as_dict(limit), indent=2))
    else:
        for line in diff.render_text(found, config.source, limit):
            print(line)
    code = 0 if found.empty else 1
    if getattr(args, "whole_process", False):
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """End the process with ``code``, its output written, without freeing what it holds
    one object at a time (for a million names, a few tenths of a second)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _dns_address(text: str | None, config: Config) -> Any:
    """--dns, or the first listen address of the configuration (loopback for a wildcard)."""
    from resolver.core.endpoint import Endpoint
    from resolver.sources.config_sections import parse_endpoint

    if text:
        return parse_endpoint(text, 53)
    first = config.listen[0]
    if first.host in ("0.0.0.0", "::"):
        return Endpoint("::1" if first.host == "::" else "127.0.0.1", first.port)
    return first


def _moment(text: str | None) -> datetime:
    """--at: an ISO 8601 date or time (UTC when no offset is given); now when absent."""
    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--at {text!r} is not a date or date-time like {AT_FORMAT}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


AT_FORMAT = (
    "2026-01-31, 2026-01-31T12:00 or 2026-01-31T12:00+09:00 (ISO 8601; UTC without an offset)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sinkhole",
        description="A DNS sinkhole resolver: blocked names get a warning page. "
        "`sinkhole COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = command(
        sub,
        "serve",
        "run the resolver",
        "Run the resolver: answer DNS over UDP and TCP on the configured listen addresses,\n"
        "blocked names by their policies, every other name forwarded to the upstreams and\n"
        "cached. SIGHUP (`sinkhole reload`) reloads the configuration, every policy, list\n"
        "and zone (a broken file keeps the old policies in force); SIGTERM stops it. Logs\n"
        "are JSON lines on stdout, readable lines on a terminal (log_format:). Its pid file\n"
        "(pid_file:) is how `sinkhole reload` finds it. Without --config: loopback port\n"
        "5353, policies/*.yaml, the nameservers of /etc/resolv.conf.",
        "  sinkhole serve --config /etc/sinkhole/config.yaml\n"
        "  sinkhole reload --config /etc/sinkhole/config.yaml  # re-read the files, no query lost\n"
        "  systemctl reload sinkhole                           # the same under systemd",
    )
    serve.add_argument(
        "--config", "-c", help="configuration file (default: built-in, loopback port 5353)"
    )
    serve.add_argument("--worker", help=argparse.SUPPRESS)  # SLOT:FD, set by the supervisor
    serve.set_defaults(func=cmd_serve)

    check = command(
        sub,
        "check",
        "validate the configuration and every policy, then exit",
        "Read the configuration, every policy, list and zone without starting a server,\n"
        "and print every error and warning as file:line:col: severity: message (entries\n"
        "listed twice, conflicts between policies, exemptions that exempt nothing, skipped\n"
        "list lines, policies not in force). Exit 0 without errors (warnings allowed),\n"
        "1 with errors.",
        "  sinkhole check --config /etc/sinkhole/config.yaml && systemctl reload sinkhole",
    )
    check.add_argument("--config", "-c", help="configuration file (default: built-in)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=cmd_check)

    reload = command(
        sub,
        "reload",
        "make the running server re-read its files, and say whether it did",
        "Find the running server by its pid file (pid_file: in the configuration, by default\n"
        "/run/sinkhole/sinkhole.pid for root, $RUNTIME_DIRECTORY under systemd, else under\n"
        "$XDG_RUNTIME_DIR) and send it SIGHUP. With metrics: configured, wait for the\n"
        "server's reload counters: exit 0 when it reloaded, 1 when it failed (the errors\n"
        "are listed; the old policies stay in force). Without metrics:, check the files\n"
        "first and signal only when they load. Exit 2 when no server is found. Under\n"
        "systemd, `systemctl reload sinkhole` does the same.",
        "  sinkhole reload --config /etc/sinkhole/config.yaml",
    )
    reload.add_argument(
        "--config",
        "-c",
        help="the configuration the server was started with (default: the built-in one, "
        "or whatever server holds the default pid file)",
    )
    reload.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the outcome on /metrics (default: %(default)s)",
    )
    reload.set_defaults(func=cmd_reload)

    explain = command(
        sub,
        "explain",
        "show which entry decides a query, and the answer it gets",
        "Show the entry that decides a query (file and line), every other entry that\n"
        "matched and why it lost, and the exact answer the server would send, or the\n"
        "upstreams it would be forwarded to; for a client address and a moment, since\n"
        "entries can be scoped to clients and policies dated. Exit 1 when the compiled\n"
        "table and the entries disagree.",
        "  sinkhole explain www.casino.example --client 10.20.1.5 --at 2026-09-01T08:00+09:00",
    )
    explain.add_argument("name", help="the query name")
    explain.add_argument("--type", "-t", default="A", help="query type (default: A)")
    explain.add_argument(
        "--client", help="client address (default: one in no network the policies name)"
    )
    explain.add_argument(
        "--at",
        help=f"the moment to explain at: a date or date-time like {AT_FORMAT} (default: now)",
    )
    explain.add_argument("--config", "-c", help="configuration file (default: built-in)")
    explain.add_argument("--json", action="store_true", help="machine-readable output")
    explain.set_defaults(func=cmd_explain)

    diff = command(
        sub,
        "diff",
        "show what a reload would change against the running server",
        "Compare the files with what the running server enforces (read from its control\n"
        "endpoint) and list what a reload would change: names newly blocked, unblocked or\n"
        "decided otherwise, answers that would change (addresses, TTL, redirect target,\n"
        "EDE; the running server's answers are asked of it over DNS), and policies added,\n"
        "removed or changed. Exit 0: nothing would change, 1: something would, 2: cannot\n"
        "tell.",
        "  sinkhole diff --config /etc/sinkhole/config.yaml && echo nothing to reload",
    )
    diff.add_argument("--config", "-c", help="configuration file (default: built-in)")
    diff.add_argument(
        "--server", help="the server's control endpoint (default: control: in the config)"
    )
    diff.add_argument(
        "--dns",
        help="the server's DNS address, HOST:PORT, to compare answers "
        "(default: the first listen: address of the config)",
    )
    diff.add_argument("--all", action="store_true", help=f"list every name, not the first {50}")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(func=cmd_diff)

    add_verify(sub)

    export = command(
        sub,
        "export-rpz",
        "write the YAML policies as one RPZ zone on stdout (BIND, Unbound ...)",
        "Write the YAML policies as one standard response policy zone on stdout, for\n"
        "BIND, Unbound or any RPZ resolver, with precedence resolved so that they answer\n"
        "every name as sinkhole does. Policy ids and references go into comments; entries\n"
        "scoped to clients are left out, with a warning.",
        "  sinkhole export-rpz --config /etc/sinkhole/config.yaml --origin rpz.example "
        "> rpz.example.zone",
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
    args.whole_process = argv is None  # the process's own command line: it may end at once
    if args.command != "serve" and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `sinkhole diff | head` ends quietly
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
