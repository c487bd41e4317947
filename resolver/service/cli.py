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

from resolver import __version__
from resolver.core.errors import SourceError
from resolver.sources.config import Config, default_config, load_config


def _config(args: argparse.Namespace) -> tuple[Config, Path | None]:
    if args.config:
        path = Path(args.config)
        return load_config(path), path.resolve()
    return default_config(), None


def _print_errors(exc: SourceError) -> None:
    """``file:line:col: error: message`` on stderr for every error ``exc`` stands for."""
    from resolver.tools.diagnostics import errors_of

    for diagnostic in errors_of(exc):
        print(diagnostic.text(), file=sys.stderr)


def _load_failed(exc: SourceError, what: str) -> int:
    """Report a file that does not load; the exit status for it."""
    _print_errors(exc)
    print(f"sinkhole: {what}; `sinkhole check` lists every error", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    from resolver.service.app import run_server

    try:
        config, path = _config(args)
    except SourceError as exc:
        _print_errors(exc)
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
    from resolver.tools.diff_answers import AnswerError

    if getattr(args, "whole_process", False):
        # A short-lived process: its million names hold no cycles worth collecting, and
        # each collection would walk the large lists and tables just made.
        gc.disable()
    try:
        config, _ = _config(args)
    except SourceError as exc:
        return _load_failed(exc, "the new files do not load")
    server = args.server or (f"http://{config.control}" if config.control else "")
    if server and "://" not in server:
        server = "http://" + server
    # The running server's entries are read while the files are built.
    reading = diff.start_reading(server) if server else None
    try:
        result = build_snapshot(config)
    except SourceError as exc:
        return _load_failed(exc, "the new files do not load")
    if not server or reading is None:
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


def cmd_verify(args: argparse.Namespace) -> int:
    from resolver.sources.config_sections import parse_endpoint
    from resolver.tools import verify, verify_plan, verify_report

    servers = []
    for text in args.server:
        try:
            servers.append(parse_endpoint(text, 53))
        except ValueError as exc:
            print(
                f"sinkhole: --server {text!r} is not an address like 127.0.0.1:53 ({exc})",
                file=sys.stderr,
            )
            return 2
    problem = _verify_problem(args)
    if problem:
        print(f"sinkhole: {problem}", file=sys.stderr)
        return 2
    settings = verify.Settings(args.qps, args.timeout, args.max_unanswered)
    try:
        builder = _plan_builder(args)
        client = explain_client(args.client) if args.client else None
        plans: dict[str, verify_plan.Plan] = {}
        targets = []
        for server in servers:
            address = client or verify_plan.local_address(server)
            if str(address) not in plans:
                plans[str(address)] = builder(address)
            targets.append((server, plans[str(address)]))
    except SourceError as exc:
        return _load_failed(exc, "the policies or lists do not load")
    except (ValueError, OSError) as exc:
        print(f"sinkhole: {exc}", file=sys.stderr)
        return 2
    reports = verify.run(
        targets,
        settings,
        Path(args.junit) if args.junit else None,
        args.progress if args.progress is not None else sys.stderr.isatty(),
    )
    if args.json:
        print(json.dumps(verify_report.as_json(reports), indent=2))
    else:
        for i, report in enumerate(reports):
            if i:
                print()
            for line in verify_report.render_server(report, settings.describe()):
                print(line)
        if len(reports) > 1:
            print()
            for line in verify_report.render_summary(reports):
                print(line)
    return verify_report.EXIT[verify_report.overall(reports)]


def _verify_problem(args: argparse.Namespace) -> str:
    """What is wrong with the arguments of verify, or ""."""
    if args.qps <= 0 or args.timeout <= 0 or (args.sample is not None and args.sample < 1):
        return "--qps, --timeout and --sample must be positive"
    if not 0 <= args.max_unanswered <= 100:
        return "--max-unanswered is a percentage, from 0 to 100"
    register = ("expect", "column", "delimiter", "encoding", "skip_rows")
    if not args.list:
        given = [f"--{k.replace('_', '-')}" for k in register if getattr(args, k) is not None]
        if args.format is not None:
            given.append("--format")
        if given:
            return f"{', '.join(given)}: only with --list FILE (a register to audit)"
    elif args.config:
        return "--list audits a register as published: it takes no --config"
    for path in [*(args.list or ()), *(args.allowed or ())]:
        if not Path(path).is_file():
            return f"{path}: no such file"
    return ""


def _plan_builder(args: argparse.Namespace) -> Any:
    """A function from the client address to the plan of checks."""
    from resolver.sources.policy_lists import ListRef
    from resolver.sources.snapshot import build_snapshot
    from resolver.tools import verify_plan
    from resolver.tools.verify_judge import parse_expect

    allowed = [Path(p) for p in args.allowed or ()]
    subtree = not args.no_subtree
    if args.list:
        expect = parse_expect(args.expect or [])
        column: str | int | None = args.column
        if isinstance(column, str) and column.isdigit():
            column = int(column)
        refs = [
            ListRef(
                Path(path),
                args.format or "domains",
                0,
                csv_column=column,
                delimiter=args.delimiter or ",",
                encoding=args.encoding or "utf-8",
                skip_rows=args.skip_rows or 0,
            )
            for path in args.list
        ]

        def register(client: Any) -> verify_plan.Plan:
            plan = verify_plan.plan_register(refs, expect, client, args.sample, args.seed, subtree)
            if allowed:
                blocked_by = verify_plan.register_blocks(plan)
                verify_plan.add_allowed(plan, allowed, expect.signature, blocked_by)
            return plan

        return register
    config, _ = _config(args)
    result = build_snapshot(config)
    now = datetime.now(UTC)
    compiled = result.snapshot.policy
    compiled.set_clock(now)

    def policies(client: Any) -> verify_plan.Plan:
        plan = verify_plan.plan_policies(
            config,
            list(result.policies),
            [r.listed for r in result.reports],
            compiled,
            client,
            now,
            args.sample,
            args.seed,
            subtree,
        )
        if allowed:
            signature = verify_plan.policy_signature(config, plan)
            blocked_by = verify_plan.policies_block(compiled, client)
            verify_plan.add_allowed(plan, allowed, signature, blocked_by)
        return plan

    return policies


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
        raise ValueError(f"--at {text!r} is not a date or date-time like {AT_FORMAT}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


AT_FORMAT = (
    "2026-01-31, 2026-01-31T12:00 or 2026-01-31T12:00+09:00 (ISO 8601; UTC without an offset)"
)


def _command(
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sinkhole",
        description="A DNS sinkhole resolver: blocked names get a warning page. "
        "`sinkhole COMMAND --help` describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"sinkhole {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
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

    check = _command(
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

    reload = _command(
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

    explain = _command(
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

    diff = _command(
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

    _verify_parser(sub)

    export = _command(
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


def _verify_parser(sub: Any) -> None:
    verify = _command(
        sub,
        "verify",
        "check that resolvers (any resolvers) enforce the policies or a register",
        "Ask one or more resolvers, sinkhole or not, every blocked and exempted name of the\n"
        "policies (and two names under each blocked site), or every name of a register\n"
        "(--list), over UDP and TCP, for A and AAAA, and judge each answer: blocked names\n"
        "must get the mandated answer; exempted and --allowed names must carry no sign of\n"
        "the block (its EDE, warning page, redirect). Prints a summary per server, writes\n"
        "JUnit XML and JSON. Exit 0: compliant, 1: violations, 2: could not check (no\n"
        "names, or too many queries unanswered). Queries go to the given servers only.",
        "  sinkhole verify --server 192.0.2.53:53 --config /etc/sinkhole/config.yaml "
        "--junit verify.xml\n"
        "  sinkhole verify --server 192.0.2.53 --server 192.0.2.54 --list register.csv "
        "--format csv \\\n"
        "      --delimiter ';' --column domain --expect warning-page=192.0.2.80 --json",
    )
    verify.add_argument(
        "--server",
        required=True,
        action="append",
        help="a resolver to check, HOST[:PORT] (repeat for several; port 53 by default)",
    )
    verify.add_argument(
        "--config", "-c", help="configuration with the policies (default: built-in)"
    )
    verify.add_argument(
        "--allowed",
        action="append",
        metavar="FILE",
        help="names (one a line) that must not be blocked: over-blocking is a violation",
    )
    verify.add_argument(
        "--no-subtree",
        action="store_true",
        help="ask only the entries' names, not www. and a random name under each blocked site",
    )
    verify.add_argument("--sample", type=int, help="check a random sample of N names")
    verify.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    verify.add_argument(
        "--qps", type=float, default=200.0, help="queries per second to each server (default: 200)"
    )
    verify.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for one answer (default: 2)"
    )
    verify.add_argument(
        "--max-unanswered",
        type=float,
        default=10.0,
        metavar="PERCENT",
        help="more checks than this unanswered: exit 2, could not check (default: 10)",
    )
    verify.add_argument(
        "--client", help="the address the server sees us as, for client scopes (default: ours)"
    )
    verify.add_argument("--junit", metavar="FILE", help="write JUnit XML to this file")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: on a terminal only)",
    )
    register = verify.add_argument_group(
        "auditing a register as published (--list instead of the policies)"
    )
    register.add_argument(
        "--list", action="append", metavar="FILE", help="the register's file (repeatable)"
    )
    register.add_argument(
        "--format",
        choices=("domains", "hosts", "adblock", "csv"),
        help="how the register is written (default: domains, one name a line)",
    )
    register.add_argument(
        "--column", help="csv: the column of the names, by header name or number from 0"
    )
    register.add_argument("--delimiter", help="csv: the field separator (default: ,)")
    register.add_argument("--encoding", help="the file's encoding (default: utf-8)")
    register.add_argument(
        "--skip-rows", type=int, help="csv: lines before the header (a timestamp, say)"
    )
    register.add_argument(
        "--expect",
        action="append",
        metavar="ANSWER",
        help="what a listed name must get: warning-page=ADDR[,ADDR], nxdomain, nodata, "
        "or any-block (NXDOMAIN, NODATA, a sink address, a block EDE or the given warning "
        "page; the default); repeat for any one of several",
    )
    verify.set_defaults(func=cmd_verify)


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
