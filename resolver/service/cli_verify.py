"""`sinkhole verify`: its arguments, and the plan of checks they ask for."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resolver.core.errors import SourceError
from resolver.service.cli_shared import command, config_of, load_failed


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
        client = _client(args.client) if args.client else None
        plans: dict[str, verify_plan.Plan] = {}
        targets = []
        for server in servers:
            address = client or verify_plan.local_address(server)
            if str(address) not in plans:
                plans[str(address)] = builder(address)
            targets.append((server, plans[str(address)]))
    except SourceError as exc:
        return load_failed(exc, "the policies or lists do not load")
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
    config, _ = config_of(args)
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


def _client(text: str) -> Any:
    from resolver.tools.explain import parse_client

    return parse_client(text)


def add_verify(sub: Any) -> None:
    """The verify subcommand, added to ``sub``."""
    verify = command(
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
