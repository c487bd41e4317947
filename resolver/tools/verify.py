"""`sinkhole verify`: check that resolvers, any resolvers, enforce the policies or a register.

Every name to check (verify_plan) is asked of each server over UDP and TCP, for A and
AAAA, paced (``qps`` per server), each query bounded by a timeout, so a run is bounded
in count and time; each answer is judged (verify_judge) and recorded (verify_report):
a summary per server, JSON, JUnit XML, and the exit status (0 compliant, 1 violations,
2 could not check). Queries go to the given servers only.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from resolver.core.endpoint import Endpoint
from resolver.tools.dnsanswer import TYPES, question
from resolver.tools.verify_net import Client, Pace, pace_for, paced
from resolver.tools.verify_plan import Plan, Probe
from resolver.tools.verify_report import JUnit, Progress, ServerReport, Suite

TRANSPORTS = ("udp", "tcp")
DEFAULT_QPS = 200.0


@dataclass(frozen=True)
class Settings:
    qps: float = DEFAULT_QPS  # per server
    timeout: float = 2.0
    max_unanswered: float = 10.0  # percent of the checks
    types: tuple[str, ...] = tuple(TYPES)
    transports: tuple[str, ...] = TRANSPORTS

    def describe(self) -> str:
        return f"{' and '.join(self.types)} over {' and '.join(t.upper() for t in self.transports)}"


Job = tuple[Probe, str, str]


def jobs(plan: Plan, settings: Settings) -> Iterator[Job]:
    for probe in plan.probes:
        for qtype in settings.types:
            for transport in settings.transports:
                yield probe, qtype, transport


async def check_server(
    server: Endpoint,
    plan: Plan,
    settings: Settings,
    suite: Suite | None,
    progress: Progress,
) -> ServerReport:
    """Every check of ``plan`` against one server."""
    planned = len(plan.probes) * len(settings.types) * len(settings.transports)
    report = ServerReport(str(server), plan, planned, settings.max_unanswered)
    pace: Pace = pace_for(settings.qps, settings.timeout)
    client = Client(
        server,
        udp_sockets=max(2, min(16, math.ceil(settings.qps / 1500))),
        tcp_connections=max(2, min(8, math.ceil(settings.qps / 2500))),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(job: Job) -> None:
        probe, qtype, transport = job
        asked = question(probe.qname, TYPES[qtype])
        outcome = await client.ask(
            asked, transport, settings.timeout, probe.expect.tries(transport)
        )
        judgement = probe.expect.judge(qtype, transport, outcome)
        report.record(probe, qtype, transport, outcome, judgement)
        if suite is not None:
            suite.check(probe, qtype, transport, outcome, judgement)
        progress.add(judgement)

    try:
        await client.start()
    except OSError as exc:
        report.given_up = f"cannot send to {server}: {exc.strerror or exc}"
    remaining = jobs(plan, settings)
    try:
        if not report.given_up:
            await paced(remaining, one, pace, lambda: bool(report.given_up))
    finally:
        client.close()
    report.seconds = loop.time() - started
    order = {id(probe): i for i, probe in enumerate(plan.probes)}
    for found in (report.violations, report.errors):  # in the order of the plan, not of arrival
        found.sort(key=lambda c: (order[id(c.probe)], c.qtype, c.transport))
    for probe, qtype, transport in remaining:  # given up on: not asked
        report.not_asked += 1
        if suite is not None:
            suite.not_asked(probe, qtype, transport, f"not asked: {report.given_up}")
    if suite is not None:
        suite.seconds = report.seconds
        for skip in plan.skipped:
            suite.skip_name(skip)
    return report


async def check_all(
    targets: list[tuple[Endpoint, Plan]],
    settings: Settings,
    junit: JUnit | None,
    progress: Progress,
) -> list[ServerReport]:
    """Every server at once, each at its own pace."""
    suites = [
        junit.suite(f"sinkhole verify {server}") if junit is not None else None
        for server, _ in targets
    ]
    reports = await asyncio.gather(
        *(
            check_server(server, plan, settings, suite, progress)
            for (server, plan), suite in zip(targets, suites, strict=True)
        )
    )
    progress.finish()
    return list(reports)


def run(
    targets: list[tuple[Endpoint, Plan]],
    settings: Settings,
    junit_path: Path | None = None,
    show_progress: bool = False,
) -> list[ServerReport]:
    """Check every server against its plan; write the JUnit file when asked."""
    junit = JUnit(junit_path) if junit_path is not None else None
    total = sum(len(p.probes) for _, p in targets) * len(settings.types) * len(settings.transports)
    progress = Progress(total, show_progress)
    try:
        reports = _run_loop(check_all(targets, settings, junit, progress))
    except BaseException:
        if junit is not None:
            junit.abandon()
        raise
    if junit is not None:
        junit.close()
    return reports


def _run_loop(main: object) -> list[ServerReport]:
    """asyncio.run, with uvloop where it is installed (faster sockets and timers)."""
    assert asyncio.iscoroutine(main)
    try:
        import uvloop
    except ImportError:
        result: list[ServerReport] = asyncio.run(main)
        return result
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        found: list[ServerReport] = runner.run(main)
        return found
