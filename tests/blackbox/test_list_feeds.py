"""Lists fetched from where they are published (``url:``), against an HTTPS server on
127.0.0.1 whose certificate a test CA (trustme) signed: the first fetch, a 304 refresh,
a changed list, a publisher that is down, a pinned digest, an oversized body, start-up
from the saved copy, and the fetch done once for every worker."""

from __future__ import annotations

import hashlib
import re
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.listserver import ListServer
from support.procs import Sinkhole, SinkholeFactory, free_port, wait_until

from blackbox.dnsclient import addresses, ask, v4

pytestmark = pytest.mark.blackbox

WARNING = "192.0.2.80"
PATH = "/ads.txt"
FIRST = b"# a published list\none.feed.example\n"
SECOND = FIRST + b"two.feed.example\n"


@pytest.fixture
def lists(tmp_path: Path) -> Iterator[ListServer]:
    server = ListServer(tmp_path / "list-server")
    server.publish(PATH, FIRST)
    yield server
    server.stop()


def policy(lists: ListServer, refresh: str = "1s", **keys: str) -> str:
    extra = "".join(f"    {key}: {value}\n" for key, value in keys.items())
    return (
        "id: feed\n"
        "lists:\n"
        f"  - url: {lists.url(PATH)}\n"
        f"    refresh: {refresh}\n"
        f"    ca_file: {lists.ca_file}\n"
        f"{extra}"
    )


def start(
    factory: SinkholeFactory, lists: ListServer, text: str, **settings: Any
) -> tuple[Sinkhole, int]:
    port = free_port()
    server = factory(
        {"feed.yaml": text},
        name="feeds",
        settings={"state_dir": "state", "metrics": f"127.0.0.1:{port}", **settings},
    )
    return server, port


def blocked(server: Sinkhole, name: str) -> bool:
    return addresses(ask(v4(server), name)) == [WARNING]


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3.0) as response:
        text = response.read().decode()
    found = re.findall(r"^(sinkhole_\w+) ([0-9.e+-]+)$", text, re.MULTILINE)
    return {name: float(value) for name, value in found}


def test_first_fetch_then_304_then_a_changed_list(
    sinkhole_factory: SinkholeFactory, lists: ListServer
) -> None:
    server, port = start(sinkhole_factory, lists, policy(lists))
    missing = server.events("list_copy_missing")
    assert missing and missing[0]["url"] == lists.url(PATH)
    server.wait_event("policy_reloaded", 10.0)
    assert blocked(server, "one.feed.example")
    assert not blocked(server, "www.two.feed.example")
    copies = list((server.workdir / "state" / "lists").glob("127.0.0.1-*.list"))
    assert [c.read_bytes() for c in copies] == [FIRST]

    # Refreshes are conditional: 304, and no reload for them.
    assert wait_until(lambda: lists.statuses(PATH).count(304) >= 2, 10.0)
    assert lists.requests[1][1]["if-none-match"]
    assert wait_until(lambda: metrics(port)["sinkhole_list_fetches_total"] >= 3, 5.0)
    assert metrics(port)["sinkhole_reloads_total"] == 1
    assert len(server.events("policy_reloaded")) == 1

    mark = server.mark()
    lists.publish(PATH, SECOND)
    server.wait_event("policy_reloaded", 10.0, mark)
    assert blocked(server, "two.feed.example")
    assert blocked(server, "www.two.feed.example")  # a domains list: the subtree
    numbers = metrics(port)
    assert numbers["sinkhole_reloads_total"] == 2
    assert numbers["sinkhole_list_fetch_failures_total"] == 0
    assert numbers["sinkhole_lists_fetched"] == 1
    assert numbers["sinkhole_list_last_success_seconds"] > 0


def test_a_publisher_down_keeps_the_copy_and_start_up_uses_it(
    sinkhole_factory: SinkholeFactory, lists: ListServer
) -> None:
    server, port = start(sinkhole_factory, lists, policy(lists))
    server.wait_event("policy_reloaded", 10.0)
    lists.stop()
    mark = server.mark()
    failed = server.wait_event("list_fetch_failed", 10.0, mark)
    assert failed["url"] == lists.url(PATH)
    assert "refused" in failed["error"].lower()
    assert failed["kept"].startswith("the copy fetched ")
    assert blocked(server, "one.feed.example")
    numbers = metrics(port)
    assert numbers["sinkhole_list_fetch_failures_total"] >= 1
    assert numbers["sinkhole_lists_failing"] == 1
    assert numbers["sinkhole_list_last_failure_seconds"] > 0
    assert numbers["sinkhole_list_copy_age_seconds"] >= 0
    assert server.stop(signal.SIGTERM) == 0

    # Started again with the publisher still down: the saved copy is enforced at once.
    again, _ = start(sinkhole_factory, lists, policy(lists))
    assert again.started["names"] == 1
    assert blocked(again, "one.feed.example")
    again.wait_event("list_fetch_failed", 10.0)
    assert again.events("list_copy_missing") == []


def test_no_copy_and_the_publisher_down_is_an_empty_list_until_it_answers(
    sinkhole_factory: SinkholeFactory, lists: ListServer
) -> None:
    lists.stop()
    server, port = start(sinkhole_factory, lists, policy(lists))
    assert server.events("list_copy_missing")
    failed = server.wait_event("list_fetch_failed", 10.0)
    assert failed["kept"] == "none: the list is empty"
    assert not blocked(server, "one.feed.example")
    assert metrics(port)["sinkhole_lists_without_copy"] == 1
    lists.start()
    server.wait_event("policy_reloaded", 10.0)
    assert blocked(server, "one.feed.example")


def test_a_body_that_is_not_the_pinned_one_is_refused(
    sinkhole_factory: SinkholeFactory, lists: ListServer
) -> None:
    pin = hashlib.sha256(FIRST).hexdigest()
    server, _ = start(sinkhole_factory, lists, policy(lists, sha256=pin))
    server.wait_event("policy_reloaded", 10.0)
    assert blocked(server, "one.feed.example")
    mark = server.mark()
    lists.publish(PATH, SECOND)
    failed = server.wait_event("list_fetch_failed", 10.0, mark)
    assert "sha256" in failed["error"] and pin in failed["error"]
    assert not blocked(server, "two.feed.example")
    assert blocked(server, "one.feed.example")
    assert len(server.events("policy_reloaded")) == 1


def test_an_oversized_body_is_refused(sinkhole_factory: SinkholeFactory, lists: ListServer) -> None:
    server, _ = start(sinkhole_factory, lists, policy(lists), max_file_size="1KiB")
    server.wait_event("policy_reloaded", 10.0)
    mark = server.mark()
    lists.publish(PATH, SECOND + b"".join(b"n%d.feed.example\n" % i for i in range(200)))
    failed = server.wait_event("list_fetch_failed", 10.0, mark)
    assert "larger than max_file_size (1 KiB)" in failed["error"]
    assert not blocked(server, "two.feed.example")
    assert blocked(server, "one.feed.example")


def test_without_the_ca_the_certificate_is_not_trusted(
    sinkhole_factory: SinkholeFactory, lists: ListServer
) -> None:
    text = f"id: feed\nlists:\n  - url: {lists.url(PATH)}\n"
    server, _ = start(sinkhole_factory, lists, text)
    failed = server.wait_event("list_fetch_failed", 10.0)
    assert "certificate is not trusted" in failed["error"]
    assert lists.requests == []


def test_with_workers_the_supervisor_fetches_once_and_every_worker_reloads(
    sinkhole_factory: SinkholeFactory, lists: ListServer
) -> None:
    server, port = start(sinkhole_factory, lists, policy(lists, refresh="1h"), workers=2)
    server.wait_event("workers_ready", 10.0)
    done = server.wait_event("workers_reloaded", 10.0)
    assert done["ok"] is True
    assert sorted(e["worker"] for e in server.events("policy_reloaded")) == [0, 1]
    assert lists.statuses(PATH) == [200]
    # Only the supervisor logs about the list (its lines carry no worker number).
    for event in ("list_copy_missing", "list_fetched"):
        assert all("worker" not in e for e in server.events(event))
    assert len(server.events("list_copy_missing")) == 1
    for _ in range(10):  # fresh source ports: both workers answer some
        assert blocked(server, "one.feed.example")
    assert metrics(port)["sinkhole_list_fetches_total"] == 1


HOSTS = "# a hosts file\n0.0.0.0 cdn.hosts.example\n127.0.0.1 ads.hosts.example\n"
DOMAINS = "cdn.domains.example\n"
WIDE = "0.0.0.0 cdn.wide.example\n"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_hosts_list_blocks_its_names_alone_a_domains_list_their_subtrees(
    sinkhole_factory: SinkholeFactory, tmp_path: Path, workers: int
) -> None:
    """Alone, and with workers (the supervisor's builder adds each list's names in bulk)."""
    text = (
        "id: match\n"
        "lists:\n"
        "  - {file: lists/ads.hosts, format: hosts}\n"
        "  - {file: lists/ads.domains}\n"
        "  - {file: lists/wide.hosts, format: hosts, match: subtree}\n"
    )
    workdir = tmp_path / "match"
    (workdir / "policies" / "lists").mkdir(parents=True)
    (workdir / "policies" / "lists" / "ads.hosts").write_text(HOSTS)
    (workdir / "policies" / "lists" / "ads.domains").write_text(DOMAINS)
    (workdir / "policies" / "lists" / "wide.hosts").write_text(WIDE)
    server = sinkhole_factory({"match.yaml": text}, name="match", workers=workers)
    if workers > 1:
        server.wait_event("workers_ready", 10.0)
    assert blocked(server, "cdn.hosts.example")
    assert blocked(server, "ads.hosts.example")
    assert not blocked(server, "www.cdn.hosts.example")
    assert not blocked(server, "hosts.example")
    assert blocked(server, "cdn.domains.example")
    assert blocked(server, "www.cdn.domains.example")
    assert blocked(server, "www.cdn.wide.example")
