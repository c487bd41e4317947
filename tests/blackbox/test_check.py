"""`sinkhole check`: exit 0 on good files, exit 1 with file:line:col: error: lines on bad ones."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.procs import REPO

pytestmark = pytest.mark.blackbox

ERROR_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)$")

GOOD_POLICY = """\
id: good
authority: Test Court
block:
  - good.example
"""


def check(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resolver", "check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def errors(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    out = []
    for line in result.stdout.splitlines():
        found = ERROR_LINE.match(line)
        if found:
            out.append(found.groupdict())
    return out


def write_setup(tmp_path: Path, policy: str, **config: object) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(policy)
    settings: dict[str, object] = {
        "listen": ["127.0.0.1:5300"],
        "upstreams": ["127.0.0.1:5301"],
        "policies": ["policies/*.yaml"],
    }
    settings.update(config)
    path = tmp_path / "sinkhole.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def test_bundled_policies_pass() -> None:
    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok: ")
    assert errors(result) == []


def test_a_good_config_passes(tmp_path: Path) -> None:
    result = check("--config", str(write_setup(tmp_path, GOOD_POLICY)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 policies, 1 names" in result.stdout


def test_a_url_entry_is_an_error(tmp_path: Path) -> None:
    policy = GOOD_POLICY + "  - twitter.com/uriminzok\n"
    result = check("--config", str(write_setup(tmp_path, policy)))
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = errors(result)
    assert error["file"] == str(tmp_path / "policies" / "p.yaml")
    assert error["line"] == "5"
    assert error["col"] == "5"
    assert "DNS can only block whole names" in error["message"]
    assert "'twitter.com'" in error["message"]


def test_an_unquoted_wildcard_says_to_quote_it(tmp_path: Path) -> None:
    policy = GOOD_POLICY + "  - *.example.com\n"
    result = check("--config", str(write_setup(tmp_path, policy)))
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = errors(result)
    assert error["file"] == str(tmp_path / "policies" / "p.yaml")
    assert error["line"] == "5"
    assert "quote" in error["message"].lower(), error["message"]


def test_an_unknown_config_key_is_named(tmp_path: Path) -> None:
    config = write_setup(tmp_path, GOOD_POLICY, upstream_timout=1.0)
    result = check("--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = errors(result)
    assert error["file"] == str(config)
    assert error["line"] == "7"
    assert "'upstream_timout'" in error["message"]


@pytest.mark.parametrize("address", ["localhost:53", "127.0.0.1:99999", "[::1", "1.2.3:53"])
def test_a_bad_listen_address_is_an_error(tmp_path: Path, address: str) -> None:
    config = write_setup(tmp_path, GOOD_POLICY, listen=[address])
    result = check("--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = errors(result)
    assert error["file"] == str(config)
    assert error["line"] == "2"
    assert "listen" in error["message"]
    assert address in error["message"]


def test_json_output(tmp_path: Path) -> None:
    policy = GOOD_POLICY + "  - https://example.org/page\n"
    result = check("--config", str(write_setup(tmp_path, policy)), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["errors"][0]["line"] == 5


WARNING_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+):(?P<col>\d+): warning: (?P<message>.+)$")


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    policy = GOOD_POLICY + "  - www.good.example\n"
    result = check("--config", str(write_setup(tmp_path, policy)))
    assert result.returncode == 0, result.stdout + result.stderr
    [warning] = [m.groupdict() for m in map(WARNING_LINE.match, result.stdout.splitlines()) if m]
    assert warning["file"] == str(tmp_path / "policies" / "p.yaml")
    assert (warning["line"], warning["col"]) == ("5", "5")
    assert "already covered by good.example" in warning["message"]
    assert result.stdout.splitlines()[-1].endswith("1 policies, 2 names, 1 warning")


def test_every_broken_file_is_reported(tmp_path: Path) -> None:
    config = write_setup(tmp_path, GOOD_POLICY + "  - twitter.com/uriminzok\n")
    (tmp_path / "policies" / "q.yaml").write_text("id: q\nblock:\n  - 192.0.2.1\n")
    result = check("--config", str(config))
    assert result.returncode == 1
    assert sorted((Path(e["file"]).name, e["line"]) for e in errors(result)) == [
        ("p.yaml", "5"),
        ("q.yaml", "3"),
    ]
    assert result.stdout.splitlines()[-1] == "failed: 2 errors, 0 warnings"


def test_a_missing_colon_is_reported_at_its_line(tmp_path: Path) -> None:
    policy = "id: kr\nname: x\nauthority Korea Communications Standards Commission\n"
    policy += "".join(f"reference{n}: r\n" for n in range(14))  # 17 lines in all
    result = check("--config", str(write_setup(tmp_path, policy)))
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = errors(result)
    assert (error["line"], error["col"]) == ("3", "1")
    assert "line 3 may be missing a ':' after the key" in error["message"]
    assert "'authority: Korea Communications Standards Commission'" in error["message"]


def test_every_configuration_error_is_reported(tmp_path: Path) -> None:
    config = write_setup(
        tmp_path, GOOD_POLICY, listen=["localhost:53"], query_log="loud", upstream_timout=1
    )
    result = check("--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    found = errors(result)
    assert {e["file"] for e in found} == {str(config)}
    assert [e["line"] for e in found] == ["2", "7", "8"]
    assert "'localhost:53'" in found[0]["message"]
    assert "query_log" in found[1]["message"]
    assert "'upstream_timout'" in found[2]["message"]
    assert result.stdout.splitlines()[-1] == "failed: 3 errors, 0 warnings"


def test_a_missing_configuration_file_is_named(tmp_path: Path) -> None:
    absent = tmp_path / "nonexist.yaml"
    result = check("--config", str(absent))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == (
        f"{absent}: error: cannot read the configuration: it does not exist"
    )
    assert ":0:0" not in result.stdout
    served = subprocess.run(
        [sys.executable, "-m", "resolver", "serve", "--config", str(absent)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert served.returncode == 2
    assert served.stderr.startswith(f"{absent}: error: cannot read the configuration")


def test_one_name_may_be_written_without_a_list(tmp_path: Path) -> None:
    policy = (
        "id: kr\nauthority: Test Court\nblock: uriminzokkiri.com\nallow: safe.uriminzokkiri.com\n"
    )
    result = check("--config", str(write_setup(tmp_path, policy)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith("1 policies, 2 names")


def test_two_names_on_one_line_are_an_error(tmp_path: Path) -> None:
    policy = "id: kr\nauthority: Test Court\nblock: uriminzokkiri.com, example.org\n"
    result = check("--config", str(write_setup(tmp_path, policy)))
    assert result.returncode == 1, result.stdout + result.stderr
    [error] = errors(result)
    assert (error["line"], error["col"]) == ("3", "8")
    assert "one name per entry" in error["message"]
