"""The ``system`` marker: skipped with the package to install, failed under CI, checked
before fixtures, and a program handed only to a test that declared it.

The pure part with a stand-in lookup; the marker itself by running pytest on a small
test file in a child process, with a program that is on no machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support import tools

SUPPORT = Path(tools.__file__).resolve().parent
ABSENT = "sinkhole-absent-program"


def nowhere(program: str) -> str | None:
    return None


def everywhere(program: str) -> str | None:
    return f"/usr/sbin/{program}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("", False), ("false", False)],
)
def test_ci_is_read_from_the_environment(value: str, expected: bool) -> None:
    assert tools.strict({"CI": value}) is expected
    assert tools.strict({}) is False


def test_missing_programs_skip_with_the_package_outside_ci() -> None:
    missing = tools.check(["named", "nsupdate", "unbound"], {}, nowhere)
    assert missing is not None and not missing.fail
    assert missing.programs == ("named", "nsupdate", "unbound")
    assert "apt-get install bind9 bind9-dnsutils unbound" in missing.message


def test_missing_programs_fail_under_ci() -> None:
    missing = tools.check(["systemd-analyze"], {"CI": "true"}, nowhere)
    assert missing is not None and missing.fail
    assert "CI" in missing.message and "apt-get install systemd" in missing.message


def test_nothing_to_do_when_everything_is_installed() -> None:
    assert tools.check(["named", "dnsdist"], {"CI": "true"}, everywhere) is None
    assert tools.check([], {}, nowhere) is None


def test_packages_to_install_come_from_one_table() -> None:
    assert tools.missing_packages(everywhere) == []
    assert tools.missing_packages(nowhere) == sorted(set(tools.PACKAGES.values()))
    assert tools.unknown(["named", "drill"]) == ["drill"]


def test_the_package_list_runs_without_anything_installed() -> None:
    """``.ci/run`` calls it before pip: the standard library must be enough (-I: no site)."""
    result = subprocess.run(
        [sys.executable, "-I", str(SUPPORT / "tools.py"), "packages"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) <= set(tools.PACKAGES.values())


PROBE = f'''
import pytest
from support.system import program


@pytest.fixture
def started(tmp_path_factory):
    marker = tmp_path_factory.getbasetemp().parent.parent / "fixture-started"
    marker.write_text("started")


@pytest.mark.system("sh")
def test_present():
    assert program("sh").endswith("/sh")


@pytest.mark.system("sh", "{ABSENT}")
def test_absent(started):
    pass


def test_undeclared():
    program("sh")


@pytest.mark.system("sh")
def test_declared_another():
    program("{ABSENT}")


@pytest.mark.system("no-such-program-known")
def test_unknown():
    pass


@pytest.mark.system
def test_bare():
    pass
'''


def run_probe(root: Path, ci: bool) -> dict[str, tuple[str, str]]:
    """Run PROBE under pytest in a child; (outcome, message) per test name."""
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    system(*programs): runs programs\n")
    (root / "conftest.py").write_text(
        "from support import tools\n"
        f"tools.PACKAGES.update({{'sh': 'dash', {ABSENT!r}: 'absent-package'}})\n"
    )
    (root / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT.parent), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = "true"
    report = root / "report.xml"
    argv = [sys.executable, "-m", "pytest", "-p", "support.system", "-p", "no:cacheprovider"]
    argv += ["--strict-markers", "-c", str(root / "pytest.ini"), "--rootdir", str(root)]
    argv += ["--basetemp", str(root / "tmp" / "base"), f"--junitxml={report}", str(root)]
    result = subprocess.run(
        argv,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.is_file(), result.stdout + result.stderr
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        found = [(child.tag, child.get("message", "")) for child in case]
        outcome = next(((t, m) for t, m in found if t in ("skipped", "failure", "error")), None)
        outcomes[case.get("name", "")] = outcome or ("passed", "")
    return outcomes


def test_the_marker_outside_ci(tmp_path: Path) -> None:
    outcomes = run_probe(tmp_path, ci=False)
    assert outcomes["test_present"] == ("passed", "")
    kind, message = outcomes["test_absent"]
    assert kind == "skipped"
    assert ABSENT in message and "apt-get install absent-package" in message
    assert not (tmp_path / "fixture-started").exists()  # skipped before its fixtures
    kind, message = outcomes["test_undeclared"]
    assert kind == "failure" and "not marked @pytest.mark.system('sh')" in message
    kind, message = outcomes["test_declared_another"]
    assert kind == "failure" and f"@pytest.mark.system('{ABSENT}')" in message
    kind, message = outcomes["test_unknown"]
    assert kind == "error" and "no Debian package known for no-such-program-known" in message
    assert outcomes["test_bare"][0] == "error"


def test_the_marker_under_ci_fails_instead_of_skipping(tmp_path: Path) -> None:
    outcomes = run_probe(tmp_path, ci=True)
    assert outcomes["test_present"] == ("passed", "")
    kind, message = outcomes["test_absent"]
    assert kind == "error", outcomes["test_absent"]
    assert "under CI" in message and "apt-get install absent-package" in message
    assert not (tmp_path / "fixture-started").exists()
    assert not [name for name, (kind, _) in outcomes.items() if kind == "skipped"]
