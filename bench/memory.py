#!/usr/bin/env python3
"""Memory and reload of sinkhole with a large block list, for several worker counts.

  python bench/memory.py [--names N] [--workers 1,2,4] [--form list|inline] [--qps Q]

For each worker count: starts ``python -m resolver serve`` (this clone's sources) on a
free loopback port with one policy of N generated names (``list``: a policy naming a
list file; ``inline``: the names under ``block:`` of the policy YAML), and reports

* ready: seconds from start until every worker is serving and a listed name is blocked;
* PSS: proportional set size (``/proc/PID/smaps_rollup``) of the supervisor and each
  worker, and the total (memory a shared page costs is split between the processes
  that map it, so the total is what the server costs the machine);
* reload: one name is appended and SIGHUP sent while a steady stream of blocked queries
  runs (``--qps``); seconds until the reload is reported done and the new name is
  blocked by every worker, queries lost during the reload, and PSS after it;
* a broken policy reloaded: the old one must stay in force (the new name still blocked).

Only loopback is used; every wait has a deadline and the server is stopped by its PID.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from gen import names as generated_names  # noqa: E402

WARNING = "192.0.2.80"
START_TIMEOUT = 300.0
RELOAD_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        return int(udp.getsockname()[1])


def blocked(port: int, name: str, timeout: float = 1.0) -> bool | None:
    """True when ``name`` gets the warning page, False when not, None on no answer."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        reply = dns.query.udp(query, "127.0.0.1", timeout=timeout, port=port)
    except (dns.exception.Timeout, OSError):
        return None
    return any(WARNING in rrset.to_text() for rrset in reply.answer)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def everywhere(port: int, name: str, asks: int = 24) -> bool:
    """``name`` blocked on ``asks`` queries from fresh source ports (so by every worker)."""
    return all(blocked(port, name) for _ in range(asks))


def processes(pid: int) -> list[int]:
    """``pid`` and its children (the workers), not the children's children."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        out.extend(int(c) for c in children)
    return out


def pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def pss_report(pid: int) -> tuple[int, list[int]]:
    found = [pss_kib(p) for p in processes(pid)]
    return sum(found), found


class Stream:
    """Blocked queries at a fixed rate on one socket: sent, answered, lost."""

    def __init__(self, port: int, names: list[str], qps: int) -> None:
        self.port, self.names, self.qps = port, names, qps
        self.sent = self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        pending: set[int] = set()
        interval = 1.0 / self.qps
        next_at = time.monotonic()
        qid = 0
        stop_at: float | None = None
        while True:
            now = time.monotonic()
            if self._stop.is_set() and stop_at is None:
                stop_at = now + 1.0  # a last second for the answers still on their way
            if stop_at is not None and (now > stop_at or not pending):
                break
            if stop_at is None and now >= next_at:
                qid = (qid + 1) & 0xFFFF
                query = dns.message.make_query(self.names[qid % len(self.names)], "A")
                query.id = qid
                sock.sendto(query.to_wire(), ("127.0.0.1", self.port))
                pending.add(qid)
                self.sent += 1
                next_at += interval
            try:
                data = sock.recv(4096)
                got = int.from_bytes(data[:2], "big")
                if got in pending:
                    pending.discard(got)
                    self.answered += 1
            except BlockingIOError:
                time.sleep(min(interval, 0.001))
        sock.close()

    @property
    def lost(self) -> int:
        return self.sent - self.answered


def write_data(root: Path, n: int, form: str) -> list[str]:
    names = generated_names(n)
    policies = root / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    if form == "list":
        (root / "names.txt").write_text("\n".join(names) + "\n")
        policy = "id: bench\nlists:\n  - file: ../names.txt\n    format: domains\n"
    else:
        policy = "id: bench\nblock:\n" + "".join(f"  - {name}\n" for name in names)
    (policies / "bench.yaml").write_text(policy)
    return names


def append_name(root: Path, form: str, name: str) -> None:
    path = root / "names.txt" if form == "list" else root / "policies" / "bench.yaml"
    with path.open("a") as f:
        f.write(f"{name}\n" if form == "list" else f"  - {name}\n")


class Server:
    def __init__(self, root: Path, workers: int) -> None:
        self.port = free_port()
        config = root / f"sinkhole-{workers}.yaml"
        config.write_text(
            json.dumps(
                {
                    "listen": [f"127.0.0.1:{self.port}"],
                    "upstreams": [],
                    "policies": ["policies/*.yaml"],
                    "query_log": "off",
                    "workers": workers,
                    "warning_page": {"ipv4": [WARNING], "ttl": 60},
                }
            )
        )
        self.log = (root / f"server-{workers}.log").open("w+")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "resolver", "serve", "--config", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.workers = workers

    def events(self, event: str) -> list[dict[str, Any]]:
        self.log.flush()
        out = []
        for line in Path(self.log.name).read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                out.append(record)
        return out

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise SystemExit(f"server exited with {self.process.returncode}; see {self.log.name}")
        if self.workers > 1:
            return bool(self.events("workers_ready"))
        return bool(self.events("started"))

    def reloads_done(self) -> int:
        return len(self.events("workers_reloaded" if self.workers > 1 else "policy_reloaded")) + (
            0 if self.workers > 1 else len(self.events("policy_reload_failed"))
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def measure(root: Path, names: list[str], form: str, workers: int, qps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": workers}
    started = time.monotonic()
    server = Server(root, workers)
    try:
        wait_for(server.ready, START_TIMEOUT, "the server to start")
        wait_for(lambda: everywhere(server.port, names[-1], 4), START_TIMEOUT, "a blocked name")
        out["ready_s"] = round(time.monotonic() - started, 2)
        time.sleep(1.0)
        out["pss_mib"], parts = pss_report(server.process.pid)
        out["pss_parts_mib"] = [round(p / 1024, 1) for p in parts]
        fresh = f"reloaded-{workers}-{os.getpid()}.example"
        append_name(root, form, fresh)
        with Stream(server.port, names[:1000], qps) as stream:
            time.sleep(1.0)
            done = server.reloads_done()
            sent = time.monotonic()
            server.process.send_signal(signal.SIGHUP)
            wait_for(lambda: server.reloads_done() > done, RELOAD_TIMEOUT, "the reload")
            wait_for(lambda: everywhere(server.port, fresh), RELOAD_TIMEOUT, "the new name")
            out["reload_s"] = round(time.monotonic() - sent, 2)
            time.sleep(1.0)
        out["stream_sent"], out["stream_lost"] = stream.sent, stream.lost
        time.sleep(1.0)
        out["pss_after_reload_mib"], parts = pss_report(server.process.pid)
        out["pss_after_reload_parts_mib"] = [round(p / 1024, 1) for p in parts]
        # A broken policy: the reload fails and the previous policy stays in force.
        broken = root / "policies" / "broken.yaml"
        broken.write_text("id: broken\nblock: [unclosed\n")
        done = server.reloads_done()
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: server.reloads_done() > done, RELOAD_TIMEOUT, "the failed reload")
        out["broken_reload_kept_old"] = everywhere(server.port, fresh)
        broken.unlink()
    finally:
        server.stop()
    for key in ("pss_mib", "pss_after_reload_mib"):
        out[key] = round(out[key] / 1024, 1) if key in out else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--form", choices=("list", "inline"), default="list")
    parser.add_argument("--qps", type=int, default=500, help="blocked queries/s during reload")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sinkhole-memory."))
    try:
        names = write_data(root, args.names, args.form)
        print(f"# {args.names} names ({args.form}), scratch {root}", flush=True)
        rows = []
        for count in (int(w) for w in args.workers.split(",")):
            row = measure(root, names, args.form, count, args.qps)
            print(json.dumps(row), flush=True)
            rows.append(row)
        print()
        print(
            "| workers | ready (s) | PSS total (MiB) | per process (MiB) | reload (s) "
            "| lost / sent during reload | PSS after reload | broken reload keeps old |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['workers']} | {r['ready_s']} | {r['pss_mib']} | "
                f"{' + '.join(map(str, r['pss_parts_mib']))} | {r['reload_s']} | "
                f"{r['stream_lost']} / {r['stream_sent']} | {r['pss_after_reload_mib']} | "
                f"{r['broken_reload_kept_old']} |"
            )
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
