"""A real browser opens a blocked site and sees the warning page.

Headless Chromium opens http://uriminzokkiri.com/ with Korean as its language. Where
the machine allows a private network namespace (``unshare``), the whole path is the
real one: Chromium's own DNS lookup goes to sinkhole on 127.0.0.1:53 (through a
resolv.conf seen only in that namespace), gets the warning-page address, and loads
the page from the warning server on port 80 there. Elsewhere the name is mapped to
the address sinkhole answered with ``--host-resolver-rules``. The page's text is
read with ``--dump-dom``; a screenshot is taken too (set WARNING_SCREENSHOT to a path
to keep it: the README's docs/warning-page-ko.png is made that way, with a Korean
font installed).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.procs import SinkholeFactory
from support.system import program

from blackbox.dnsclient import addresses, ask, v4
from blackbox.warningsite import KR_POLICY, start

pytestmark = [pytest.mark.blackbox, pytest.mark.system("chromium")]

URL = "http://uriminzokkiri.com/"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--accept-lang=ko-KR,ko",
    "--window-size=1000,740",
)
SHOWN = (
    "방송통신심의위원회",
    "국가보안법 제7조",
    "접속이 차단된 사이트입니다",
    "uriminzokkiri.com",
)

# Run inside the namespace: loopback up, this namespace's resolv.conf, sinkhole on port
# 53 with its warning page on port 80, then the browser twice (text, then picture).
SCRIPT = """\
set -eu
ip link set lo up
mount --bind "$DIR/resolv.conf" /etc/resolv.conf
"$PYTHON" -m resolver serve --config "$DIR/sinkhole.yaml" > "$DIR/server.log" 2>&1 &
server=$!
trap 'kill $server; wait $server || true' EXIT
for _ in $(seq 200); do
  grep -q '"warning_server_started"' "$DIR/server.log" && break
  kill -0 $server
  sleep 0.05
done
"$CHROMIUM" "$@" --user-data-dir="$DIR/profile-1" --dump-dom "$URL" > "$DIR/dom.html"
"$CHROMIUM" "$@" --user-data-dir="$DIR/profile-2" --screenshot="$DIR/page.png" "$URL"
"""


def namespaces_work() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "--net", "--mount", "true"], capture_output=True, check=False)
    return probe.returncode == 0


def through_sinkhole_dns(tmp_path: Path) -> tuple[str, str]:
    """The page's DOM and the server's log, Chromium's DNS pointed at sinkhole."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "kr.yaml").write_text(KR_POLICY, encoding="utf-8")
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\noptions attempts:1\n")
    settings = {
        "listen": ["127.0.0.1:53"],
        "upstreams": [],
        "policies": ["policies/*.yaml"],
        "warning_page": {"ipv4": ["127.0.0.1"], "ttl": 60},
        "query_log": "blocked",
        "workers": 1,
        "warning_server": {"listen": ["127.0.0.1:80"]},
    }
    (tmp_path / "sinkhole.yaml").write_text(yaml.safe_dump(settings))
    env = {
        **os.environ,
        "DIR": str(tmp_path),
        "PYTHON": sys.executable,
        "CHROMIUM": program("chromium"),
        "URL": URL,
    }
    run = subprocess.run(
        ["unshare", "--net", "--mount", "sh", "-c", SCRIPT, "sh", *FLAGS],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else ""
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n{log[-3000:]}"
    return (tmp_path / "dom.html").read_text(encoding="utf-8"), log


def through_resolver_rules(factory: SinkholeFactory, tmp_path: Path) -> tuple[str, str]:
    """The page's DOM, the name mapped to the address sinkhole answers with."""
    site = start(
        factory, {"10-kr.yaml": KR_POLICY}, warning_page={"ipv4": ["127.0.0.1"], "ttl": 60}
    )
    [address] = addresses(ask(v4(site.server), "uriminzokkiri.com"))
    rules = f"--host-resolver-rules=MAP uriminzokkiri.com {address}:{site.http_port}"
    browser = [program("chromium"), *FLAGS, rules]
    dom = subprocess.run(
        [*browser, f"--user-data-dir={tmp_path / 'profile-1'}", "--dump-dom", URL],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    profile, picture = tmp_path / "profile-2", tmp_path / "page.png"
    subprocess.run(
        [*browser, f"--user-data-dir={profile}", f"--screenshot={picture}", URL],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return dom, "\n".join(site.server.lines)


def test_a_browser_sees_the_korean_warning_page(
    sinkhole_factory: SinkholeFactory, tmp_path: Path
) -> None:
    if namespaces_work():
        dom, log = through_sinkhole_dns(tmp_path)
        # Chromium's own lookup reached sinkhole: the query log has it, blocked.
        asked = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert any(
            e.get("qname") == "uriminzokkiri.com"
            and e.get("qtype") == "A"
            and e.get("outcome") == "blocked"
            for e in asked
        ), log[-3000:]
    else:
        dom, _ = through_resolver_rules(sinkhole_factory, tmp_path)
    for shown in SHOWN:
        assert shown in dom, (shown, dom[-2000:])
    assert 'lang="ko"' in dom
    picture = (tmp_path / "page.png").read_bytes()
    assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 10_000
    keep = os.environ.get("WARNING_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(picture)
