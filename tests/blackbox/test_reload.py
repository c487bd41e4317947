"""SIGHUP (or `sinkhole reload`) reloads the policies: new names are blocked, a broken file
keeps the old policy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.exception
import dns.rcode
import pytest
from support.procs import (
    WARNING_IPV4,
    FakeUpstream,
    SinkholeFactory,
    free_port,
    standard_settings,
    wait_until,
    write_config,
)

from blackbox.dnsclient import addresses, ask, unique, v4
from blackbox.standard import UPSTREAM_IPV4

pytestmark = pytest.mark.blackbox

PACE = 0.001  # seconds between queries of the reload client (2000 queries: at least 2 s)

POLICY = """\
id: reloadable
authority: Test Court
reference: Order 1
block:
  - old.example
"""


def policy_with(*names: str) -> str:
    return POLICY + "".join(f"  - {name}\n" for name in names)


def is_blocked(where: tuple[str, int], name: str) -> bool:
    return addresses(ask(where, name)) == [WARNING_IPV4]


def test_sighup_blocks_a_new_name(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY})
    new = unique("fresh")
    assert addresses(ask(v4(server), new)) == [UPSTREAM_IPV4]  # cached as allowed now
    assert fake_upstream.count(new) == 1

    mark = server.mark()
    server.write_policy("p.yaml", policy_with(new))
    server.send_signal(signal.SIGHUP)
    reloaded = server.wait_event("policy_reloaded", 5.0, start=mark)
    assert reloaded["names"] == 2
    assert wait_until(lambda: is_blocked(v4(server), new), timeout=3.0), (
        "the new name was not blocked"
    )
    assert is_blocked(v4(server), "www." + new)
    assert is_blocked(v4(server), "old.example")
    assert fake_upstream.count(new) == 1


def test_sighup_unblocks_a_removed_name(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    gone = unique("gone")
    server = sinkhole_factory({"p.yaml": policy_with(gone)})
    assert is_blocked(v4(server), gone)
    mark = server.mark()
    server.write_policy("p.yaml", POLICY)
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reloaded", 5.0, start=mark)
    assert wait_until(lambda: not is_blocked(v4(server), gone), timeout=3.0)
    assert addresses(ask(v4(server), gone)) == [UPSTREAM_IPV4]
    assert fake_upstream.count(gone) == 1


def test_a_broken_policy_keeps_the_old_one(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory({"p.yaml": POLICY})
    new = unique("never")
    broken = POLICY + f"  - {new}\n  - twitter.com/uriminzok\n"
    broken_line = broken.splitlines().index("  - twitter.com/uriminzok") + 1
    mark = server.mark()
    path = server.write_policy("p.yaml", broken)
    server.send_signal(signal.SIGHUP)
    failed = server.wait_event("policy_reload_failed", 5.0, start=mark)
    assert failed["file"] == str(path)
    assert failed["line"] == broken_line
    assert "whole names" in failed["error"]
    assert not server.events("policy_reloaded")
    # The old policy stays in force: the old name blocked, the new one not.
    assert is_blocked(v4(server), "old.example")
    assert addresses(ask(v4(server), new)) == [UPSTREAM_IPV4]
    # Fixing the file and reloading again works.
    mark = server.mark()
    server.write_policy("p.yaml", policy_with(new))
    server.send_signal(signal.SIGHUP)
    server.wait_event("policy_reloaded", 5.0, start=mark)
    assert wait_until(lambda: is_blocked(v4(server), new), timeout=3.0)


def test_a_policy_file_with_bad_yaml_keeps_the_old_one(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory({"p.yaml": POLICY})
    mark = server.mark()
    path = server.write_policy("p.yaml", POLICY + "  - [unclosed\n")
    server.send_signal(signal.SIGHUP)
    failed = server.wait_event("policy_reload_failed", 5.0, start=mark)
    assert failed["file"] == str(path)
    assert failed["line"] >= 6
    assert is_blocked(v4(server), "old.example")


def test_queries_during_reloads_are_all_answered(
    sinkhole_factory: SinkholeFactory, fake_upstream: FakeUpstream
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY}, query_log="off")
    extra = unique("extra")
    total = 2000
    failures: list[str] = []
    leaks: list[str] = []
    answered = [0]
    blocked_names = ["old.example", "www.old.example", "a.b.old.example"]
    started = threading.Event()

    def client() -> None:
        begin = time.monotonic()
        for i in range(total):
            if i == 50:
                started.set()
            pause = begin + i * PACE - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            blocked = i % 2 == 0
            if blocked:
                name = blocked_names[i % 3]
            else:
                name = unique("during") if i % 10 == 1 else "steady.example"
            try:
                r = ask(v4(server), name, "A", timeout=2.0)
            except dns.exception.Timeout:
                failures.append(f"query {i} for {name} timed out")
                continue
            answered[0] += 1
            if blocked and addresses(r) != [WARNING_IPV4]:
                leaks.append(f"query {i} for {name}: {r.rcode()} {addresses(r)}")
            if not blocked and (r.rcode() != dns.rcode.NOERROR or addresses(r) != [UPSTREAM_IPV4]):
                failures.append(f"query {i} for {name}: {r.rcode()} {addresses(r)}")
        started.set()

    thread = threading.Thread(target=client, name="reload-client")
    thread.start()
    assert started.wait(10.0)
    mark = server.mark()
    for n in range(10):
        # Alternate between two policies that both block old.example.
        server.write_policy("p.yaml", policy_with(extra) if n % 2 == 0 else POLICY)
        server.send_signal(signal.SIGHUP)
        time.sleep(0.1)
    assert thread.is_alive(), "the queries ended before the reloads did: nothing was tested"
    thread.join(60.0)
    assert not thread.is_alive(), "the query client did not finish"
    assert not leaks, f"{len(leaks)} blocked queries got an upstream answer: {leaks[:5]}"
    assert not failures, f"{len(failures)} queries failed: {failures[:5]}"
    assert answered[0] == total
    server.wait_event("policy_reloaded", 5.0, start=mark)
    assert not server.events("policy_reload_failed")
    for name in blocked_names:
        assert fake_upstream.count(name) == 0


# --- sinkhole reload ----------------------------------------------------------------------


def sinkhole_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolver", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_reload_command_changes_the_policy_and_reports_a_failure(
    sinkhole_factory: SinkholeFactory,
) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    server = sinkhole_factory({"p.yaml": POLICY}, pid_file="sinkhole.pid", metrics=metrics)
    pid_file = server.workdir / "sinkhole.pid"
    assert pid_file.read_text() == f"{server.pid}\n{server.config}\n"
    new = unique("by-command")
    server.write_policy("p.yaml", policy_with(new))
    result = sinkhole_cli("reload", "--config", str(server.config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"reloaded pid {server.pid}" in result.stdout
    assert is_blocked(v4(server), new)  # the command returns once the server reloaded

    # A broken file: exit 1, the error at its line, the old policy still in force.
    mark = server.mark()
    server.write_policy("p.yaml", POLICY.replace("authority: ", "authority "))
    result = sinkhole_cli("reload", "--config", str(server.config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the reload failed" in result.stderr
    assert f"{server.policies_dir / 'p.yaml'}:2:1: error: " in result.stderr
    assert "line 2 may be missing a ':'" in result.stderr
    failed = server.wait_event("policy_reload_failed", 5.0, start=mark)
    assert failed["level"] == "error"
    assert failed["summary"].startswith("the previous policy stays in force: ")
    assert "p.yaml:2:1: not valid YAML: line 2 may be missing a ':'" in failed["summary"]
    assert is_blocked(v4(server), new) and is_blocked(v4(server), "old.example")

    assert server.stop(signal.SIGTERM) == 0
    assert not pid_file.exists()  # removed at stop


def test_reload_command_without_metrics_checks_the_files_first(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY}, pid_file="sinkhole.pid")
    new = unique("checked")
    mark = server.mark()
    server.write_policy("p.yaml", policy_with(new, "twitter.com/uriminzok"))
    result = sinkhole_cli("reload", "--config", str(server.config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"not reloaded: 1 error; the server (pid {server.pid}) keeps" in result.stderr
    assert f"{server.policies_dir / 'p.yaml'}:7:5: error: " in result.stderr
    assert not server.events("policy_reload_failed")  # not signalled at all
    assert server.events("policy_reloaded") == []

    server.write_policy("p.yaml", policy_with(new))
    result = sinkhole_cli("reload", "--config", str(server.config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"reload signalled to pid {server.pid}" in result.stdout
    server.wait_event("policy_reloaded", 5.0, start=mark)
    assert wait_until(lambda: is_blocked(v4(server), new), timeout=3.0)


def test_reload_command_with_no_server_says_so(tmp_path: Path) -> None:
    config = tmp_path / "sinkhole.yaml"
    config.write_text("pid_file: run/sinkhole.pid\nupstreams: ['127.0.0.1:5399']\n")
    result = sinkhole_cli("reload", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"sinkhole: no running server found: {tmp_path / 'run' / 'sinkhole.pid'} does not exist"
    )
    assert "systemctl reload sinkhole" in result.stderr


def test_reload_command_ignores_the_pid_file_of_a_killed_server(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory({"p.yaml": POLICY}, pid_file="sinkhole.pid")
    server.kill()  # SIGKILL: the file stays, with a pid that may be reused
    assert (server.workdir / "sinkhole.pid").exists()
    result = sinkhole_cli("reload", "--config", str(server.config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "was left by a server that has stopped" in result.stderr


def test_reload_command_refuses_a_server_of_another_configuration(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "shared.pid"
    server = sinkhole_factory({"p.yaml": POLICY}, pid_file=str(pid_file))
    other = tmp_path / "other.yaml"
    other.write_text(f"pid_file: {pid_file}\nupstreams: ['127.0.0.1:5399']\n")
    result = sinkhole_cli("reload", "--config", str(other))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"(pid {server.pid}) serves {server.config}, not {other}" in result.stderr
    assert not server.events("policy_reloaded")


def test_a_second_server_on_the_same_pid_file_runs_without_it(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "shared.pid"
    first = sinkhole_factory({"p.yaml": POLICY}, pid_file=str(pid_file))
    second = sinkhole_factory({"p.yaml": POLICY}, pid_file=str(pid_file))
    [busy] = second.events("pid_file_in_use")
    assert (busy["holder"], busy["level"]) == (first.pid, "warning")
    assert second.stop(signal.SIGTERM) == 0
    assert pid_file.read_text().startswith(f"{first.pid}\n")  # the second left it alone


def test_a_pid_file_that_cannot_be_written_fails_the_start(
    tmp_path: Path, fake_upstream: FakeUpstream
) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    (tmp_path / "not-a-directory").write_text("")
    settings = standard_settings([fake_upstream.endpoint])
    settings.update(listen=[f"127.0.0.1:{free_port()}"], pid_file="not-a-directory/s.pid")
    config = write_config(tmp_path, settings)
    result = sinkhole_cli("serve", "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [json.loads(text) for text in result.stdout.splitlines()]
    assert line["event"] == "pid_file_failed" and line["level"] == "error"
    assert line["pid_file"] == str(tmp_path / "not-a-directory" / "s.pid")


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_a_reload_builds_in_a_child_that_a_stop_ends(sinkhole_factory: SinkholeFactory) -> None:
    """A lone server builds a reload in a process of its own (the event loop never waits
    on it); stopped in the middle of one, it ends that process too."""
    names = "".join(f"n{i}.listed.example\n" for i in range(400_000))
    policy = "id: p\nlists:\n  - file: names.txt\n    format: domains\n"
    server = sinkhole_factory({"names.txt": names, "p.yaml": policy})
    assert addresses(ask(v4(server), "n7.listed.example"))
    server.send_signal(signal.SIGHUP)
    builders = wait_until(lambda: children_of(server.pid) or None, 10.0)
    assert builders, "no build process seen"
    assert server.stop() == 0
    for pid in builders:
        assert not Path(f"/proc/{pid}").exists(), f"the build process {pid} outlived the server"
