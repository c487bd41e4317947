"""`sinkhole check` with encrypted upstreams: the README's example passes, a malformed
entry or CA file is an error that names the key, the line and what to write instead."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
import yaml
from support.procs import REPO

pytestmark = pytest.mark.blackbox

HEADING = "## Forwarding over TLS and HTTPS"
ERROR_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)$")


def readme_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.index("\n## ", start + len(HEADING))
    [block] = re.findall(r"^```yaml\n(.*?)^```$", text[start:end], re.M | re.S)
    return str(block)


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolver", "check", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write(tmp_path: Path, text: str) -> Path:
    settings = yaml.safe_load(text)
    settings["policies"] = [str(REPO / "policies" / "*.yaml")]
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def errors(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    return [m.groupdict() for m in map(ERROR_LINE.match, result.stdout.splitlines()) if m]


def test_the_readme_example_passes_check(tmp_path: Path) -> None:
    block = readme_block()
    settings = yaml.safe_load(block)
    assert any(u.startswith("tls://") for u in settings["upstreams"])
    assert any(u.startswith("https://") for u in settings["upstreams"])
    # The example's CA file, made here: check reads it.
    ca = tmp_path / "upstream-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    result = check(write(tmp_path, block.replace(settings["upstream_ca"], str(ca))))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: ")


def test_malformed_entries_and_ca_are_errors_with_the_fix(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "upstreams:\n"
        "  - tls://192.0.2.53:99999#dns.example\n"
        "  - quic://192.0.2.53\n"
        "  - https://dns.example/dns-query{?dns}\n"
        "upstream_ca: missing-ca.pem\n",
    )
    result = check(config)
    assert result.returncode == 1, result.stdout + result.stderr
    found = errors(result)
    # One error per key: the first bad entry of upstreams, and upstream_ca.
    assert [e["line"] for e in found] == ["2", "5"], result.stdout
    entry, ca = found
    assert entry["message"].startswith("upstreams: 'tls://192.0.2.53:99999#dns.example': port")
    assert entry["message"].endswith(
        "write tls://HOST[:PORT][#NAME] or https://HOST[:PORT]/PATH[#NAME]"
    )
    assert ca["message"].startswith("upstream_ca: ") and "does not exist" in ca["message"]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("quic://192.0.2.53", "quic:// is not a transport sinkhole forwards over"),
        ("https://dns.example/dns-query{?dns}", "write the path without its template"),
        ("tls://192.0.2.53/dns-query", "DNS over TLS has no path"),
        ("tls://192.0.2.53#192.0.2.9", "give a host name"),
    ],
)
def test_each_malformed_entry_says_why(tmp_path: Path, entry: str, reason: str) -> None:
    result = check(write(tmp_path, f"upstreams: ['{entry}']\n"))
    assert result.returncode == 1
    [error] = errors(result)
    assert reason in error["message"], error
