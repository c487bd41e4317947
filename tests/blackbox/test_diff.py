"""The control endpoint and `sinkhole diff`: what the running server has loaded, and what a
reload of the changed files would change; reloads log names added and removed per policy."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.procs import (
    REPO,
    WARNING_IPV4,
    WARNING_IPV6,
    WARNING_TTL,
    Sinkhole,
    SinkholeFactory,
    free_port,
)

from blackbox.standard import POLICIES

pytestmark = pytest.mark.blackbox

COURT = """\
id: court
reference: Order 1
block:
  - a.example
  - "=exact.example"
  - "*.below.example"
allow:
  - open.a.example
"""

ISP = """\
id: isp
action: nxdomain
block:
  - b.example
lists:
  - file: ../lists/feed.txt
"""


def get(port: int, path: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    with urllib.request.urlopen(request, timeout=5.0) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def run_diff(server: Sinkhole, *args: str) -> subprocess.CompletedProcess[str]:
    assert server.config is not None
    return subprocess.run(
        [sys.executable, "-m", "resolver", "diff", "--config", str(server.config), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def diff_json(server: Sinkhole, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_diff(server, "--json", *args)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, document


@pytest.fixture
def server(sinkhole_factory: SinkholeFactory, tmp_path: Path) -> Sinkhole:
    """A server whose isp policy lists c.example and d.example (the list is written first)."""
    port = free_port()
    workdir = sinkhole_factory.workdir / f"sinkhole-{len(sinkhole_factory.started)}"
    (workdir / "lists").mkdir(parents=True)
    (workdir / "lists" / "feed.txt").write_text("c.example\nd.example\n")
    running = sinkhole_factory(
        {"10-court.yaml": COURT, "20-isp.yaml": ISP}, control=f"127.0.0.1:{port}"
    )
    assert running.workdir == workdir
    running.control_port = port  # type: ignore[attr-defined]
    return running


def reload(server: Sinkhole) -> dict[str, Any]:
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    return server.wait_event("policy_reloaded", 10.0, start=mark)


def test_policies_shows_what_is_loaded(server: Sinkhole) -> None:
    status, ctype, body = get(server.control_port, "/policies")  # type: ignore[attr-defined]
    assert status == 200 and ctype == "application/json"
    document = json.loads(body)
    court, isp = document["policies"]
    assert (court["order"], court["id"], isp["id"]) == (0, "court", "isp")
    assert court["file"] == str(server.policies_dir / "10-court.yaml")
    assert court["sha256"] == hashlib.sha256(COURT.encode()).hexdigest()
    assert (court["entries"], court["list_names"]) == (4, 0)
    assert (isp["entries"], isp["list_names"], isp["distinct_list_names"]) == (1, 2, 2)
    assert document["names"] == 7
    assert document["loaded_at"]


def test_entries_streams_every_entry_and_list_name(server: Sinkhole) -> None:
    status, ctype, body = get(server.control_port, "/entries")  # type: ignore[attr-defined]
    assert status == 200 and ctype.startswith("text/plain")
    lines = body.decode().splitlines()
    assert lines[:4] == [
        "a.example\tsubtree\twarning-page\tcourt",
        "exact.example\texact\twarning-page\tcourt",
        "below.example\tbelow\twarning-page\tcourt",
        "open.a.example\tsubtree\tallow\tcourt",
    ]
    assert lines[4] == "b.example\tsubtree\tnxdomain\tisp"
    assert sorted(lines[5:]) == [
        "c.example\tsubtree\tnxdomain\tisp",
        "d.example\tsubtree\tnxdomain\tisp",
    ]


def test_other_requests_are_refused(server: Sinkhole) -> None:
    port = server.control_port  # type: ignore[attr-defined]
    with pytest.raises(urllib.error.HTTPError) as info:
        get(port, "/")
    assert info.value.code == 404
    request = urllib.request.Request(f"http://127.0.0.1:{port}/entries", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5.0)
    assert info.value.code == 405


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
def test_other_methods_get_405_with_allow(server: Sinkhole, method: str) -> None:
    port = server.control_port  # type: ignore[attr-defined]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/policies", method=method)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5.0)
    assert info.value.code == 405
    assert info.value.headers["Allow"] == "GET, HEAD"


def test_head_gives_the_headers_only(server: Sinkhole) -> None:
    port = server.control_port  # type: ignore[attr-defined]
    for path, ctype in (("/policies", "application/json"), ("/entries", "text/plain")):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="HEAD")
        with urllib.request.urlopen(request, timeout=5.0) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith(ctype)
            assert response.read() == b""


def test_slow_clients_do_not_lock_others_out(server: Sinkhole) -> None:
    """20 connections that never finish their request: /policies is still answered at once."""
    port = server.control_port  # type: ignore[attr-defined]
    slow = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=3.0)
            sock.sendall(b"GET /policies HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            slow.append(sock)
        started = time.monotonic()
        status, _, body = get(port, "/policies")
        assert status == 200 and json.loads(body)["names"] == 7
        assert time.monotonic() - started < 1.0
    finally:
        for sock in slow:
            sock.close()


def test_no_change_exits_0(server: Sinkhole) -> None:
    result = run_diff(server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "no change: a reload would enforce the same decisions"


def test_diff_then_reload(server: Sinkhole) -> None:
    server.write_policy(
        "10-court.yaml",
        COURT.replace("  - a.example\n", "  - a.example\n  - new.example\n").replace(
            '  - "=exact.example"\n', ""
        ),
    )
    server.write_policy("20-isp.yaml", ISP.replace("nxdomain", "refuse"))
    (server.workdir / "lists" / "feed.txt").write_text("d.example\ne.example\n")
    server.write_policy("30-more.yaml", "id: more\nallow:\n  - www.a.example\n")

    code, document = diff_json(server)
    assert code == 1
    assert [p["id"] for p in document["policies"]["added"]] == ["more"]
    assert [p["id"] for p in document["policies"]["changed"]] == ["court", "isp"]
    assert document["policies"]["removed"] == []

    def kinds(kind: str) -> dict[str, tuple[Any, Any]]:
        return {c["name"]: (c["before"], c["after"]) for c in document[kind]["names"]}

    court = {"action": "warning-page", "policy": "court"}
    assert kinds("blocked") == {
        "new.example": (None, court),
        "e.example": (None, {"action": "refuse", "policy": "isp"}),
    }
    assert kinds("unblocked") == {
        "=exact.example": (court, None),
        "c.example": ({"action": "nxdomain", "policy": "isp"}, None),
        "www.a.example": (court, {"action": "allow", "policy": "more"}),
    }
    assert kinds("changed") == {
        "b.example": (
            {"action": "nxdomain", "policy": "isp"},
            {"action": "refuse", "policy": "isp"},
        ),
        "d.example": (
            {"action": "nxdomain", "policy": "isp"},
            {"action": "refuse", "policy": "isp"},
        ),
    }

    text = run_diff(server)
    assert text.returncode == 1
    assert "policies: 1 added, 0 removed, 2 changed" in text.stdout
    assert "names: 2 newly blocked, 3 unblocked, 2 changed" in text.stdout
    assert "  + new.example (and names under it): not blocked -> warning-page by court" in (
        text.stdout
    )
    assert "  - =exact.example: warning-page by court -> not blocked" in text.stdout

    reloaded = reload(server)
    changes = {p["id"]: (p["added"], p["removed"]) for p in reloaded["policies"]}
    assert changes == {"court": (1, 1), "isp": (1, 1), "more": (1, 0)}
    assert reloaded["policies_removed"] == []
    assert run_diff(server).returncode == 0

    server.policies_dir.joinpath("20-isp.yaml").unlink()
    code, document = diff_json(server)
    assert code == 1
    assert [p["id"] for p in document["policies"]["removed"]] == ["isp"]
    assert {c["name"] for c in document["unblocked"]["names"]} == {
        "b.example",
        "d.example",
        "e.example",
    }
    reloaded = reload(server)
    assert reloaded["policies_removed"] == ["isp"]


def test_the_listed_names_are_capped(server: Sinkhole) -> None:
    names = [f"n{i:03d}.example" for i in range(120)]
    (server.workdir / "lists" / "feed.txt").write_text("\n".join(names) + "\n")
    text = run_diff(server)
    assert text.returncode == 1
    assert "names: 120 newly blocked, 2 unblocked, 0 changed" in text.stdout
    shown = [line for line in text.stdout.splitlines() if line.startswith("  + n")]
    assert len(shown) == 50
    assert "  ... and 70 more (--all shows every name)" in text.stdout
    everything = run_diff(server, "--all")
    assert len([line for line in everything.stdout.splitlines() if line.startswith("  + n")]) == 120
    _, document = diff_json(server)
    assert document["blocked"]["count"] == 120
    assert len(document["blocked"]["names"]) == 50


def test_a_failed_reload_logs_every_error(server: Sinkhole) -> None:
    server.write_policy("10-court.yaml", COURT + "  - http://x.example/page\n")
    server.write_policy("30-bad.yaml", "id: bad\nblock:\n  - 192.0.2.1\n")
    mark = server.mark()
    server.send_signal(signal.SIGHUP)
    failed = server.wait_event("policy_reload_failed", 10.0, start=mark)
    where = sorted((Path(e["file"]).name, e["line"]) for e in failed["errors"])
    assert where == [("10-court.yaml", 9), ("30-bad.yaml", 3)]
    assert failed["file"] == str(server.policies_dir / "10-court.yaml")  # the first, as before


def test_diff_without_a_control_endpoint_exits_2(sinkhole_factory: SinkholeFactory) -> None:
    server = sinkhole_factory(POLICIES)
    result = run_diff(server)
    assert result.returncode == 2
    assert "control:" in result.stderr
    dead = run_diff(server, "--server", f"127.0.0.1:{free_port()}")
    assert dead.returncode == 2
    assert "cannot read" in dead.stderr


def test_with_workers_one_of_them_serves_control(sinkhole_factory: SinkholeFactory) -> None:
    port = free_port()
    server = sinkhole_factory(
        {"p.yaml": "id: p\nblock: [a.example]\n"}, control=f"127.0.0.1:{port}", workers=2
    )
    server.wait_event("workers_ready", 10.0)
    _, _, body = get(port, "/policies")
    assert [p["id"] for p in json.loads(body)["policies"]] == ["p"]
    assert not server.events("worker_start_failed") and not server.events("listen_failed")
    server.write_policy("p.yaml", "id: p\nblock: [a.example, b.example]\n")
    code, document = diff_json(server)
    assert code == 1
    assert [c["name"] for c in document["blocked"]["names"]] == ["b.example"]


def test_a_large_list(server: Sinkhole) -> None:
    """20,000 names stream through /entries and compare in a few seconds."""
    names = [f"host{i}.big.example" for i in range(20_000)]
    (server.workdir / "lists" / "feed.txt").write_text("\n".join(names) + "\n")
    reload(server)
    _, _, body = get(server.control_port, "/entries")  # type: ignore[attr-defined]
    assert body.count(b"\n") == 5 + 20_000
    assert run_diff(server).returncode == 0
    (server.workdir / "lists" / "feed.txt").write_text("\n".join(names[:19_990]) + "\n")
    code, document = diff_json(server)
    assert code == 1
    assert document["unblocked"]["count"] == 10


ZONE = """\
$TTL 300
@ SOA ns. host. {serial} 3600 600 86400 60
@ NS ns.
gone.example CNAME .
*.gone.example CNAME .
{extra}
"""


def test_rpz_zones_are_compared_layer_by_layer(sinkhole_factory: SinkholeFactory) -> None:
    """A zone comes after the policy files: its trigger for a name the files block changes
    nothing; a new trigger for another name does."""
    port = free_port()
    workdir = sinkhole_factory.workdir / f"sinkhole-{len(sinkhole_factory.started)}"
    workdir.mkdir(parents=True)
    zone = workdir / "rpz.zone"
    zone.write_text(ZONE.format(serial=1, extra=""))
    server = sinkhole_factory(
        {"p.yaml": "id: p\nblock: [a.example]\n"},
        control=f"127.0.0.1:{port}",
        zones=[{"name": "rpz.test", "file": "rpz.zone"}],
    )
    _, _, body = get(port, "/policies")
    [listed] = json.loads(body)["zones"]
    assert (listed["id"], listed["serial"], listed["qname_triggers"]) == ("rpz.test", 1, 2)
    _, _, entries = get(port, "/entries")
    assert "gone.example\tsubtree\tnxdomain\trpz.test" in entries.decode().splitlines()
    assert run_diff(server).returncode == 0

    zone.write_text(ZONE.format(serial=2, extra="a.example CNAME *.\nnew.example CNAME *.\n"))
    code, document = diff_json(server)
    assert code == 1
    [changed] = document["policies"]["changed"]
    assert (changed["id"], changed["serial_before"], changed["serial"]) == ("rpz.test", 1, 2)
    assert [(c["name"], c["after"]) for c in document["blocked"]["names"]] == [
        ("=new.example", {"action": "nodata", "policy": "rpz.test"})
    ]
    assert document["changed"]["count"] == 0  # a.example: the policy files decide first


def rewrite_config(server: Sinkhole, **changes: Any) -> None:
    assert server.config is not None
    settings = yaml.safe_load(server.config.read_text())
    settings.update(changes)
    server.config.write_text(yaml.safe_dump(settings, sort_keys=False))


def test_a_new_warning_page_changes_every_answer_it_gives(server: Sinkhole) -> None:
    """Only the configuration changes: no decision does, but the court's three names get
    another address and all six blocked names another TTL (the exemption: none)."""
    rewrite_config(server, warning_page={"ipv4": ["192.0.2.81"], "ipv6": [WARNING_IPV6], "ttl": 60})
    text = run_diff(server)
    assert text.returncode == 1, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert "names: 0 newly blocked, 0 unblocked, 6 changed (names in the table: 7 -> 7)" in lines
    assert "answers: 6 names would be answered otherwise" in lines
    assert f"  A address {WARNING_IPV4} -> 192.0.2.81: 3 names (policy court)" in lines
    assert f"  TTL {WARNING_TTL} -> 60: 6 names (policy court, isp)" in lines
    assert not any(line.startswith("  AAAA address") for line in lines)
    assert f"  ~ a.example: by court, A address {WARNING_IPV4} -> 192.0.2.81; TTL 123 -> 60" in (
        lines
    )
    code, document = diff_json(server)
    assert code == 1
    assert document["changed"]["count"] == 6
    causes = {(c["what"], c["before"], c["after"]): c for c in document["answers"]["causes"]}
    address = causes[("A address", WARNING_IPV4, "192.0.2.81")]
    assert (address["names"], address["policies"]) == (3, ["court"])
    assert sorted(address["examples"]) == ["*.below.example", "a.example", "exact.example"]
    assert causes[("TTL", str(WARNING_TTL), "60")]["names"] == 6
    assert document["answers"]["queries"] == 2 * 2  # a name per verdict (court, isp), A, AAAA

    reload(server)  # the warning page applies at a reload: nothing left to change
    after = run_diff(server)
    assert after.returncode == 0, after.stdout + after.stderr


def test_a_new_reference_changes_the_ede_text(server: Sinkhole) -> None:
    server.write_policy("10-court.yaml", COURT.replace("Order 1", "Order 2"))
    code, document = diff_json(server)
    assert code == 1
    assert document["policies"]["changed"][0]["id"] == "court"
    [cause] = document["answers"]["causes"]
    assert (cause["what"], cause["names"]) == ("EDE", 3)
    assert (cause["before"], cause["after"]) == (
        "15 (Blocked) 'Order 1'",
        "15 (Blocked) 'Order 2'",
    )
    text = run_diff(server)
    assert "  EDE 15 (Blocked) 'Order 1' -> 15 (Blocked) 'Order 2': 3 names" in (text.stdout)


def test_answers_cannot_be_compared_without_dns(server: Sinkhole) -> None:
    dead = run_diff(server, "--dns", f"127.0.0.1:{free_port()}")
    assert dead.returncode == 2
    assert "cannot ask 127.0.0.1:" in dead.stderr
    assert "over DNS for its answers" in dead.stderr
