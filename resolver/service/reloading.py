"""``sinkhole reload``: find the running server by its pid file, send it SIGHUP, report.

With ``metrics:`` configured, the outcome is read from the server's own counters
(``sinkhole_reloads_total``, ``sinkhole_reload_failures_total``): exit 0 once every
serving process reloaded, 1 when one failed (its errors are listed) or nothing was
seen in time. Without it the files are checked first, as the server would read them,
and a server is only signalled when they load.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from prometheus_client.parser import text_string_to_metric_families

from resolver.core.endpoint import Endpoint
from resolver.core.errors import SourceError
from resolver.service.pidfile import BUILT_IN, Holder, find, path_of
from resolver.sources.config import Config, default_config, load_config
from resolver.tools.check import check_config
from resolver.tools.diagnostics import CheckResult, Diagnostic, errors_of, plural

RELOADED, FAILED, NOT_FOUND = 0, 1, 2
POLL = 0.1  # seconds between two looks at the counters
SCRAPE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Counts:
    reloads: int
    failures: int


def run(config_arg: str | None, timeout: float, out: TextIO = sys.stdout) -> int:
    """Reload the server that serves ``config_arg`` (the one at the default pid file
    when None); the exit status."""
    config_path = Path(config_arg).resolve() if config_arg else None
    try:
        config = load_config(config_path) if config_path else default_config()
    except SourceError as exc:
        return _refuse_errors(errors_of(exc), None)
    pid_path = path_of(config)
    if pid_path is None:
        return _not_found(
            f"{config.source} says pid_file: false, so no server can be found by it; "
            "under systemd: systemctl reload sinkhole; otherwise kill -HUP the server's pid"
        )
    try:
        holder = find(pid_path)
    except OSError as exc:
        return _not_found(f"cannot read {pid_path}: {exc.strerror or exc}")
    if holder is None:
        why = "was left by a server that has stopped" if pid_path.exists() else "does not exist"
        return _not_found(
            f"no running server found: {pid_path} {why}. Start one with "
            f"`sinkhole serve{f' --config {config_arg}' if config_arg else ''}`, "
            "or under systemd use `systemctl reload sinkhole`"
        )
    if config_path is not None and holder.config != str(config_path):
        return _not_found(
            f"the server found by {pid_path} (pid {holder.pid}) serves {holder.config}, not "
            f"{config_path}; give each server its own pid_file: in its configuration"
        )
    if config_path is None and holder.config != BUILT_IN:
        try:
            config = load_config(holder.config)  # what that server will read
        except SourceError as exc:
            return _refuse_errors(errors_of(exc), holder)
    if config.metrics is not None:
        before = scrape(config.metrics)
        if before is not None:
            return _signal_and_watch(config, holder, before, timeout, out)
    errors = file_errors(config)
    if errors:
        return _refuse_errors(errors, holder)
    if not _signal(holder):
        return NOT_FOUND
    print(
        f"sinkhole: reload signalled to pid {holder.pid} ({holder.config}); the files load. "
        "Its log says policy_reloaded (with metrics: configured, this command waits for it)",
        file=out,
    )
    return RELOADED


def _signal_and_watch(
    config: Config, holder: Holder, before: Counts, timeout: float, out: TextIO
) -> int:
    assert config.metrics is not None
    expected = config.worker_count()  # serving processes, each reloads once
    if not _signal(holder):
        return NOT_FOUND
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(POLL)
        now = scrape(config.metrics)
        if now is None:
            continue
        failed = now.failures - before.failures
        done = now.reloads - before.reloads
        if failed > 0:
            print(
                f"sinkhole: the reload failed: the server (pid {holder.pid}) keeps the "
                "policies it had; its log has policy_reload_failed",
                file=sys.stderr,
            )
            for diagnostic in file_errors(config):
                print(diagnostic.text(), file=sys.stderr)
            return FAILED
        if done >= expected:
            processes = f" in {done} processes" if expected > 1 else ""
            print(f"sinkhole: reloaded pid {holder.pid} ({holder.config}){processes}", file=out)
            return RELOADED
    print(
        f"sinkhole: no reload of pid {holder.pid} seen on http://{_reachable(config.metrics)}"
        f"/metrics within {timeout:g} s; its log says whether it reloaded",
        file=sys.stderr,
    )
    return FAILED


def _signal(holder: Holder) -> bool:
    try:
        os.kill(holder.pid, signal.SIGHUP)
    except OSError as exc:
        print(f"sinkhole: cannot signal pid {holder.pid}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def _refuse_errors(errors: list[Diagnostic], holder: Holder | None) -> int:
    """The files do not load: nothing is signalled."""
    who = f"the server (pid {holder.pid}) keeps" if holder else "a running server keeps"
    count = len(errors)
    print(
        f"sinkhole: not reloaded: {count} {plural(count, 'error')}; {who} the policies it had",
        file=sys.stderr,
    )
    for diagnostic in errors:
        print(diagnostic.text(), file=sys.stderr)
    return FAILED


def _not_found(message: str) -> int:
    print(f"sinkhole: {message}", file=sys.stderr)
    return NOT_FOUND


def file_errors(config: Config) -> list[Diagnostic]:
    """The errors that stop ``config``'s files from loading, read as a reload reads them."""
    try:
        if config.source != BUILT_IN:
            config = load_config(config.source)
    except SourceError as exc:
        return errors_of(exc)
    result = CheckResult(config=config)
    check_config(config, result, datetime.now(UTC), warnings=False)
    return result.errors


def _reachable(endpoint: Endpoint) -> str:
    """The address to connect to for a listening address (loopback for a wildcard)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(endpoint.host, endpoint.host)
    return f"[{host}]:{endpoint.port}" if ":" in host else f"{host}:{endpoint.port}"


def scrape(endpoint: Endpoint) -> Counts | None:
    """The reload counters on the server's /metrics; None when they cannot be read."""
    url = f"http://{_reachable(endpoint)}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT) as response:
            text = response.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError, ValueError):
        return None
    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[sample.name] = sample.value
    except ValueError:
        return None
    if "sinkhole_reloads_total" not in values:
        return None
    return Counts(
        int(values["sinkhole_reloads_total"]), int(values.get("sinkhole_reload_failures_total", 0))
    )
