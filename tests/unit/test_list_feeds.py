"""Lists named by a url and the match mode of every list: what a policy says, where the
copy is kept, what a fetch's answer means, when the next fetch comes; `sinkhole check`'s
counts per match mode; and one HTTPS GET against a local server (trustme CA)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from support.listserver import ListServer

from resolver.core.errors import PolicyError
from resolver.core.matcher import Scope
from resolver.edge import httpget
from resolver.edge.httpget import FetchError, Got, TooLarge
from resolver.service.feeds import Refused, first_delay, judge, retry_delay
from resolver.sources.listcopy import (
    Fetched,
    conditional_headers,
    copy_path,
    default_state_dir,
    meta_bytes,
    meta_path,
    read_meta,
)
from resolver.sources.lists import ListReport, read_list
from resolver.sources.policy_lists import DEFAULT_REFRESH, ListRef, parse_duration
from resolver.sources.policy_yaml import PolicyFile, parse_policy
from resolver.tools.check import render_text, run_check

URL = "https://lists.example/ads/hosts.txt"
STATE = Path("/srv/state")


def parse(text: str, base_dir: Path = Path("/nonexistent")) -> PolicyFile:
    return parse_policy(textwrap.dedent(text), "p.yaml", base_dir, state_dir=STATE)


def error(text: str, base_dir: Path = Path("/nonexistent")) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse(text, base_dir)
    return info.value


# --- the policy's words -----------------------------------------------------------------


def test_a_url_list_is_read_from_its_copy_in_the_state_directory(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    policy = parse(
        f"""\
        id: p
        lists:
          - url: {URL}
            format: hosts
            refresh: 12h
            sha256: {"AB" * 32}
            ca_file: ca.pem
        """,
        tmp_path,
    )
    (ref,) = policy.lists
    assert ref.url == URL
    assert ref.path == copy_path(STATE, URL)
    assert ref.path.parent == STATE / "lists"
    assert ref.refresh == 12 * 3600
    assert ref.sha256 == "ab" * 32
    assert ref.ca_file == tmp_path / "ca.pem"
    assert (ref.mode, ref.scope) == ("exact", Scope.EXACT)


def test_a_url_list_defaults() -> None:
    (ref,) = parse(f"id: p\nlists:\n  - url: {URL}\n").lists
    assert (ref.format, ref.refresh, ref.sha256, ref.ca_file) == (
        "domains",
        DEFAULT_REFRESH,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("fmt", "mode"), [("domains", "subtree"), ("hosts", "exact"), ("adblock", "subtree")]
)
def test_each_format_has_its_own_match(tmp_path: Path, fmt: str, mode: str) -> None:
    (tmp_path / "l.txt").write_text("a.example\n")
    (ref,) = parse(f"id: p\nlists:\n  - {{file: l.txt, format: {fmt}}}\n", tmp_path).lists
    assert ref.mode == mode
    assert ListRef(Path("x"), "csv", 0).mode == "subtree"


def test_match_says_otherwise(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("0.0.0.0 a.example\n")
    text = "id: p\nlists:\n  - {file: l.txt, format: hosts, match: subtree}\n"
    assert parse(text, tmp_path).lists[0].scope is Scope.SUBTREE
    text = "id: p\nlists:\n  - {file: l.txt, match: exact}\n"
    assert parse(text, tmp_path).lists[0].scope is Scope.EXACT


@pytest.mark.parametrize(
    ("entry", "wanted"),
    [
        ("{url: 'http://lists.example/a.txt'}", "must start with https://"),
        ("{url: 'https:///a.txt'}", "has no host name"),
        ("{url: 'https://me:secret@lists.example/a'}", "user name or password"),
        ("{url: 'https://lists.example:99999/a'}", "is not a web address"),
        ("{url: 'https://lists.example/a', file: a.txt}", "not both"),
        ("{url: 'https://lists.example/a', refresh: soon}", "refresh must be a time"),
        ("{url: 'https://lists.example/a', refresh: 0s}", "refresh must be a time"),
        ("{url: 'https://lists.example/a', sha256: abc}", "64 hexadecimal digits"),
        ("{url: 'https://lists.example/a', ca_file: none.pem}", "ca_file"),
        ("{url: 'https://lists.example/a', match: all}", "match must be subtree"),
        ("{url: 'https://lists.example/a', format: adblock, match: exact}", "by definition"),
        ("{file: a.txt, refresh: 1h}", "only read for a list with a url"),
        ("{format: hosts}", "or a url: key"),
    ],
)
def test_mistakes_in_a_list_entry(tmp_path: Path, entry: str, wanted: str) -> None:
    (tmp_path / "a.txt").write_text("a.example\n")
    err = error(f"id: p\nlists:\n  - {entry}\n", tmp_path)
    assert wanted in err.message
    assert err.line == 3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12h", 43200), ("30m", 1800), ("1d", 86400), ("1h30m", 5400), ("90", 90), ("1d1s", 86401)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1w", "1.5h", "-1h", "1h 2x"])
def test_not_durations(text: str) -> None:
    assert parse_duration(text) is None


# --- the copy ---------------------------------------------------------------------------


def test_copies_of_two_lists_never_meet_and_keep_compression() -> None:
    a = copy_path(STATE, "https://lists.example/a.txt")
    b = copy_path(STATE, "https://lists.example/b.txt")
    assert a != b and a.name.startswith("lists.example-") and a.suffix == ".list"
    assert copy_path(STATE, "https://lists.example/big.txt.gz").suffix == ".gz"


def test_the_state_directory(tmp_path: Path) -> None:
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/x:/y"}) == Path("/var/lib/x")
    system = tmp_path / "system"
    assert default_state_dir({}, system) == system  # creatable: its parent is writable
    unwritable = tmp_path / "no-such-dir" / "system"  # neither it nor its parent exists
    assert default_state_dir({"XDG_STATE_HOME": "/home/u/.st"}, unwritable) == Path(
        "/home/u/.st/sinkhole"
    )
    assert default_state_dir({"HOME": "/home/u"}, unwritable) == Path(
        "/home/u/.local/state/sinkhole"
    )


def test_the_record_beside_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "c.list"
    meta = Fetched(URL, "ab" * 32, 10, 1000.0, '"tag"', "Mon, 01 Jun 2026 00:00:00 GMT")
    meta_path(copy).write_bytes(meta_bytes(meta))
    assert read_meta(copy, URL) == meta
    assert read_meta(copy, "https://other.example/") is None
    meta_path(copy).write_text("{broken")
    assert read_meta(copy, URL) is None


def test_conditional_headers() -> None:
    meta = Fetched(URL, "ab" * 32, 10, 1000.0, '"tag"', "Mon, 01 Jun 2026 00:00:00 GMT")
    assert conditional_headers(meta) == {
        "If-None-Match": '"tag"',
        "If-Modified-Since": "Mon, 01 Jun 2026 00:00:00 GMT",
    }
    assert conditional_headers(None) == {}
    assert conditional_headers(meta, "cd" * 32) == {}  # not the pinned copy: fetch it whole
    assert conditional_headers(Fetched(URL, "ab" * 32, 10, 1000.0)) == {}


def test_a_url_list_without_its_copy_reads_empty(tmp_path: Path) -> None:
    ref = ListRef(tmp_path / "none.list", "domains", 1, url=URL)
    report = ListReport(str(ref.path))
    assert list(read_list(ref, report)) == []
    assert report.missing
    with pytest.raises(PolicyError):  # a file list must exist
        list(read_list(ListRef(tmp_path / "none.list", "domains", 1), ListReport("x")))


# --- what a fetch means -----------------------------------------------------------------

REF = ListRef(STATE / "c.list", "domains", 1, url=URL, refresh=3600.0)
BODY = b"ads.example\n"
DIGEST = hashlib.sha256(BODY).hexdigest()
META = Fetched(URL, DIGEST, len(BODY), 1000.0, '"a"')


def test_judge_a_changed_body() -> None:
    outcome, record = judge(REF, None, Got(200, BODY, '"a"', "lm"), 2000.0, None)
    assert outcome == "changed"
    assert record == Fetched(URL, DIGEST, len(BODY), 2000.0, '"a"', "lm")
    assert judge(REF, META, Got(200, b"other.example\n"), 2000.0, DIGEST)[0] == "changed"


def test_judge_the_same_body_and_a_304() -> None:
    outcome, record = judge(REF, META, Got(200, BODY, '"a"'), 2000.0, DIGEST)
    assert outcome == "unchanged" and record.fetched_at == 2000.0
    outcome, record = judge(REF, META, Got(304, b""), 2000.0, DIGEST)
    assert outcome == "not_modified"
    assert record == Fetched(URL, DIGEST, len(BODY), 2000.0, '"a"', "")


def test_judge_refuses() -> None:
    pinned = ListRef(REF.path, "domains", 1, url=URL, sha256="cd" * 32)
    with pytest.raises(Refused, match="sha256"):
        judge(pinned, None, Got(200, BODY), 2000.0, None)
    with pytest.raises(Refused, match="empty"):
        judge(REF, META, Got(200, b""), 2000.0, DIGEST)
    with pytest.raises(Refused, match="no copy"):
        judge(REF, None, Got(304, b""), 2000.0, None)


def test_when_the_fetches_come() -> None:
    assert first_delay(META, REF, copy_exists=True, now=1000.0) == 3600.0
    assert first_delay(META, REF, copy_exists=True, now=1600.0) == 3000.0
    assert first_delay(META, REF, copy_exists=True, now=9000.0) == 0.0
    assert first_delay(META, REF, copy_exists=False, now=1000.0) == 0.0
    assert first_delay(None, REF, copy_exists=True, now=1000.0) == 0.0
    pinned = ListRef(REF.path, "domains", 1, url=URL, refresh=3600.0, sha256="cd" * 32)
    assert first_delay(META, pinned, copy_exists=True, now=1000.0) == 0.0
    assert [retry_delay(n, 86400.0) for n in (1, 2, 3, 7, 30)] == [60, 120, 240, 3600, 3600]
    assert retry_delay(5, 10.0) == 10.0


# --- sinkhole check -----------------------------------------------------------------------


def test_check_counts_names_per_match_and_warns_of_a_missing_copy(tmp_path: Path) -> None:
    (tmp_path / "policies" / "lists").mkdir(parents=True)
    (tmp_path / "policies" / "lists" / "a.hosts").write_text("0.0.0.0 a.example b.example\n")
    (tmp_path / "policies" / "lists" / "c.txt").write_text("c.example\nd.example\n")
    (tmp_path / "policies" / "p.yaml").write_text(
        "id: p\nlists:\n"
        "  - {file: lists/a.hosts, format: hosts}\n"
        "  - {file: lists/c.txt}\n"
        f"  - {{url: '{URL}'}}\n"
    )
    config = tmp_path / "sinkhole.yaml"
    config.write_text(
        yaml.safe_dump(
            {"upstreams": ["127.0.0.1:5301"], "policies": ["policies/*.yaml"], "state_dir": "st"}
        )
    )
    result = run_check(config)
    assert result.errors == []
    assert result.list_modes == {"exact": 2, "subtree": 2}
    assert result.as_dict()["list_names_by_match"] == {"exact": 2, "subtree": 2}
    assert list(render_text(result))[-1].endswith("(list names: 2 exact, 2 subtree), 1 warning")
    (warning,) = result.warnings
    assert warning.line == 5 and URL in warning.message and "empty" in warning.message
    assert str(copy_path(tmp_path / "st", URL)) in warning.message


def test_names_of_a_hosts_file_do_not_cover_the_names_under_them(tmp_path: Path) -> None:
    (tmp_path / "policies" / "lists").mkdir(parents=True)
    hosts = "0.0.0.0 a.example\n0.0.0.0 www.a.example\n"
    (tmp_path / "policies" / "lists" / "a.hosts").write_text(hosts)
    (tmp_path / "policies" / "lists" / "b.txt").write_text("b.example\nwww.b.example\n")
    (tmp_path / "policies" / "p.yaml").write_text(
        "id: p\nlists:\n  - {file: lists/a.hosts, format: hosts}\n  - {file: lists/b.txt}\n"
    )
    config = tmp_path / "sinkhole.yaml"
    config.write_text(yaml.safe_dump({"upstreams": [], "policies": ["policies/*.yaml"]}))
    result = run_check(config)
    (warning,) = result.warnings  # www.b.example is under b.example; www.a.example is not
    assert "b.txt" in warning.message and "www.b.example" in warning.message
    assert "already covered" in warning.message


# --- one HTTPS GET ------------------------------------------------------------------------


@pytest.fixture
def lists(tmp_path: Path) -> Iterator[ListServer]:
    server = ListServer(tmp_path)
    server.publish("/a.txt", BODY)
    yield server
    server.stop()


def fetch(url: str, context: ssl.SSLContext, limit: int = 1 << 20, **kw: object) -> Got:
    return asyncio.run(httpget.get(url, context, limit, 5.0, **kw))  # type: ignore[arg-type]


def test_a_get_with_the_ca_and_a_conditional_one(lists: ListServer) -> None:
    context = httpget.tls_context(lists.ca_file)
    got = fetch(lists.url("/a.txt"), context)
    assert (got.status, got.body) == (200, BODY) and got.etag
    again = fetch(lists.url("/a.txt"), context, headers={"If-None-Match": got.etag})
    assert (again.status, again.body) == (304, b"")


def test_the_system_store_does_not_know_the_test_ca(lists: ListServer) -> None:
    with pytest.raises(FetchError, match="certificate is not trusted"):
        fetch(lists.url("/a.txt"), httpget.tls_context())
    assert lists.requests == []


def test_errors_in_words(lists: ListServer) -> None:
    context = httpget.tls_context(lists.ca_file)
    with pytest.raises(FetchError, match="answered 404"):
        fetch(lists.url("/none"), context)
    with pytest.raises(TooLarge):
        fetch(lists.url("/a.txt"), context, limit=4)
    port = lists.port
    lists.stop()
    with pytest.raises(FetchError, match=f"cannot connect: {os.strerror(111)}"):
        fetch(f"https://127.0.0.1:{port}/a.txt", context)


def test_a_redirect_to_plain_http_is_not_followed(lists: ListServer) -> None:
    hits: list[str] = []

    class Plain(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    plain = ThreadingHTTPServer(("127.0.0.1", 0), Plain)
    thread = threading.Thread(target=plain.serve_forever, daemon=True)
    thread.start()
    try:
        target = f"http://127.0.0.1:{plain.server_address[1]}/a.txt"
        lists.redirects["/moved"] = target
        with pytest.raises(FetchError, match="not an HTTPS address"):
            fetch(lists.url("/moved"), httpget.tls_context(lists.ca_file))
    finally:
        plain.shutdown()
        plain.server_close()
        thread.join(5.0)
    assert hits == []
