"""The README's encrypted-DNS configuration is accepted by `sinkhole check`, and its DDR
example is what the SVCB records of that configuration read as."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
import yaml
from support.procs import REPO

from resolver.core.ddr import designations
from resolver.sources.config import load_config

pytestmark = pytest.mark.blackbox

HEADING = "## Encrypted DNS"


def section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.index("\n## ", start + len(HEADING))
    return text[start:end]


def blocks(kind: str) -> list[str]:
    return re.findall(rf"^```{kind}\n(.*?)^```$", section(), re.M | re.S)


def write(tmp_path: Path, block: str) -> Path:
    settings = yaml.safe_load(block)
    settings["upstreams"] = ["127.0.0.1:5399"]
    settings["policies"] = [str(REPO / "policies" / "*.yaml")]
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def test_the_readme_configuration_passes_check(tmp_path: Path) -> None:
    [block] = blocks("yaml")
    assert {"listen_tls", "listen_https", "tls"} <= set(yaml.safe_load(block))
    config = write(tmp_path, block)
    result = subprocess.run(
        [sys.executable, "-m", "resolver", "check", "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: ")


def test_the_readme_ddr_example_is_what_the_server_answers(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, blocks("yaml")[0]))
    assert config.tls is not None
    records = designations(config.tls.name, config.listen_tls, config.listen_https)
    shown = [line for line in blocks("text")[0].splitlines() if "SVCB" in line]
    assert len(shown) == len(records)
    for line, rdata in zip(shown, records, strict=True):
        read = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.SVCB, rdata, 0, len(rdata))
        assert line == f"_dns.resolver.arpa. 300 IN SVCB {read.to_text()}"
