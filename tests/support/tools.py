"""Programs from Debian packages that some tests run, and what a test does without one.

A test that runs such a program carries ``@pytest.mark.system("named", ...)`` (see
``support.system``). A missing program skips the test with the package to install,
except under CI (``CI=true``): CI installs every package (``.ci/run``), so there a
missing program is a broken machine and the test fails instead.

Standard library only: ``.ci/run`` runs this file before anything is installed
(``python tests/support/tools.py packages`` prints the packages still missing).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

# Every program a test may run, with the Debian package that installs it.
PACKAGES: dict[str, str] = {
    "named": "bind9",
    "nsupdate": "bind9-dnsutils",
    "dnsdist": "dnsdist",
    "unbound": "unbound",
    "unbound-checkconf": "unbound",
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
    "unshare": "util-linux",
    "getent": "libc-bin",
    "kdig": "knot-dnsutils",
    "chromium": "chromium",
    "promtool": "prometheus",
}

# Daemons live in sbin, which is not on an ordinary user's PATH.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")

Locate = Callable[[str], str | None]


def locate(program: str) -> str | None:
    """The path of ``program`` on PATH or in the sbin directories, or None."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    return shutil.which(program, path=path)


def strict(environ: Mapping[str, str]) -> bool:
    """Whether this is CI, where a missing program fails instead of skipping."""
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True)
class Missing:
    """What to do about programs that are not installed: skip, or fail under CI."""

    programs: tuple[str, ...]
    fail: bool

    @property
    def packages(self) -> list[str]:
        return sorted({PACKAGES[p] for p in self.programs})

    @property
    def message(self) -> str:
        names = ", ".join(self.programs)
        install = f"apt-get install {' '.join(self.packages)}"
        if self.fail:
            return f"{names} not installed under CI (CI=true): .ci/run should have run `{install}`"
        return f"{names} not installed: `{install}` to run this test"


def unknown(programs: Iterable[str]) -> list[str]:
    """The programs that have no Debian package in PACKAGES."""
    return [p for p in programs if p not in PACKAGES]


def check(
    programs: Iterable[str], environ: Mapping[str, str], find: Locate | None = None
) -> Missing | None:
    """None when every program is installed; else which are missing and whether to fail."""
    find = find or locate
    absent = tuple(p for p in programs if find(p) is None)
    return Missing(absent, strict(environ)) if absent else None


def missing_packages(find: Locate | None = None) -> list[str]:
    """The Debian packages to install so that every program in PACKAGES is found."""
    find = find or locate
    return sorted({package for program, package in PACKAGES.items() if find(program) is None})


if __name__ == "__main__":
    if sys.argv[1:] != ["packages"]:
        sys.exit("usage: python tests/support/tools.py packages")
    print("\n".join(missing_packages()))
