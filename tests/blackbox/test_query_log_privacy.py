"""The query log as a regulator's rules may require it: clients truncated, hashed or left
out, and a sample of the queries that were not blocked."""

from __future__ import annotations

import pytest
from support.procs import SinkholeFactory

from blackbox.dnsclient import ask, unique, v4
from blackbox.standard import BLOCKED, POLICIES

pytestmark = pytest.mark.blackbox


@pytest.mark.parametrize(
    ("how", "shown"), [("truncated", "127.0.0.0/24"), ("none", None), ("hashed", "hash")]
)
def test_clients_in_the_query_log(sinkhole_factory: SinkholeFactory, how: str, shown: str) -> None:
    server = sinkhole_factory(POLICIES, query_log={"mode": "all", "client": how})
    mark = server.mark()
    ask(v4(server), BLOCKED)
    line = server.wait_event("query", 5.0, start=mark)
    assert line["client_mode"] == how
    if shown is None:
        assert "client" not in line
    elif shown == "hash":
        assert len(line["client"]) == 16 and "127.0.0.1" not in line["client"]
    else:
        assert line["client"] == shown


def test_a_sample_of_forwarded_queries_and_every_blocked_one(
    sinkhole_factory: SinkholeFactory,
) -> None:
    server = sinkhole_factory(POLICIES, query_log={"mode": "all", "sample": 0.1})
    mark = server.mark()
    names = [unique("fwd") for _ in range(40)]
    for name in names:
        ask(v4(server), name)
    ask(v4(server), BLOCKED)
    server.wait_line(lambda line: '"outcome": "blocked"' in line, 5.0, start=mark)
    queries = [e for e in server.events("query") if e["qname"] in {*names, BLOCKED}]
    assert sum(1 for e in queries if e["outcome"] == "blocked") == 1
    assert sum(1 for e in queries if e["outcome"] == "forwarded") == 4
