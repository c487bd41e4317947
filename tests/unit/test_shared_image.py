"""The policy image (resolver.sources.shared): written once, mapped by every process, it
decides every name as the build it was made from, and refuses what it cannot read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.core import wire
from resolver.core.matcher import PackedPolicy
from resolver.core.nametable import TableError
from resolver.sources.config import load_config
from resolver.sources.shared import SMALL, name_changes, pack, read_image, write_image
from resolver.sources.snapshot import BuildResult, build_snapshot
from resolver.tools.control import entry_lines

REPO = Path(__file__).resolve().parents[2]
LISTED = [f"n{i}.listed.example" for i in range(3000)]
ENTRIES = [f"e{i}.entry.example" for i in range(SMALL + 500)]


def write_files(root: Path) -> Path:
    (root / "policies").mkdir()
    (root / "names.txt").write_text("\n".join(LISTED) + "\nn1.listed.example\n")
    (root / "policies" / "a.yaml").write_text(
        "id: a\naction: nxdomain\nblock:\n"
        + "".join(f"  - {name}\n" for name in ENTRIES)
        + "  - '=exact.example'\n  - '*.below.example'\n"
        + "allow:\n  - keep.n5.listed.example\n"
        + "lists:\n  - file: ../names.txt\n    format: domains\n"
    )
    (root / "policies" / "b.yaml").write_text(
        "id: b\nclients: [10.0.0.0/8]\nblock: [scoped.example, n7.listed.example]\n"
    )
    config = root / "sinkhole.yaml"
    config.write_text("policies: ['policies/*.yaml']\n")
    return config


@pytest.fixture
def built(tmp_path: Path) -> BuildResult:
    return build_snapshot(load_config(write_files(tmp_path)))


def probes() -> list[bytes]:
    names = [*LISTED[:200], *ENTRIES[:200], "exact.example", "x.exact.example"]
    names += ["below.example", "x.below.example", "keep.n5.listed.example", "scoped.example"]
    names += ["n7.listed.example", "other.example", "a.b.n9.listed.example"]
    return [wire.text_to_name(n) for n in names]


def same_decisions(a: BuildResult, b: BuildResult) -> None:
    def everyone(scope: object) -> bool:
        return True

    for qname in probes():
        want, name, depends = a.snapshot.policy.match_client(qname, everyone)
        got = b.snapshot.policy.match_client(qname, everyone)
        assert (got[0] is not None) == (want is not None), qname
        if want is not None:
            assert got[0] is not None
            assert (got[0].action, got[0].policy_id, got[0].order) == (
                want.action,
                want.policy_id,
                want.order,
            )
            assert got[1:] == (name, depends)


def test_an_image_read_back_decides_as_the_build(built: BuildResult, tmp_path: Path) -> None:
    image, light = pack(built)
    assert isinstance(light.snapshot.policy, PackedPolicy)
    same_decisions(built, light)
    path = tmp_path / "policy.image"
    write_image(path, image, light, {"changes": {"a": (1, 2)}})
    mapped, extra = read_image(path)
    assert extra == {"changes": {"a": (1, 2)}}
    same_decisions(built, mapped)
    assert mapped.snapshot.policy.names() == built.snapshot.policy.names()
    assert [r.as_dict() for r in mapped.reports] == [r.as_dict() for r in built.reports]
    assert set(mapped.reports[0].listed) == built.reports[0].listed
    assert len(mapped.reports[0].listed) == len(LISTED)
    many = mapped.policies[0].entries
    assert len(many) == len(built.policies[0].entries)
    assert [(e.name, e.scope, e.action) for e in many] == [
        (e.name, e.scope, e.action) for e in built.policies[0].entries
    ]
    assert mapped.policies[1].entries == built.policies[1].entries  # few: kept as they are
    assert set(mapped.reports[0].named) == built.reports[0].named
    assert name_changes(mapped, built) == {"a": (0, 0), "b": (0, 0)}
    assert name_changes(None, mapped) == {"a": (len(LISTED) + len(ENTRIES) + 3, 0), "b": (2, 0)}


def test_a_damaged_or_foreign_image_is_refused(built: BuildResult, tmp_path: Path) -> None:
    image, _ = pack(built)
    path = tmp_path / "policy.image"
    for data in (b"", b"not an image at all" * 10, bytes(image[:100])):
        path.write_bytes(data)
        with pytest.raises(TableError):
            read_image(path)
    foreign = bytearray(image)
    foreign[8:16] = bytes(a ^ 0xFF for a in foreign[8:16])  # another process's hash
    path.write_bytes(foreign)
    with pytest.raises(TableError, match="hash seed"):
        read_image(path)


READER = """
import sys
from pathlib import Path
from resolver.core import wire
from resolver.core.nametable import TableError
from resolver.sources.shared import read_image
try:
    result, _ = read_image(Path(sys.argv[1]))
except TableError as exc:
    print("refused:", exc)
else:
    verdict = result.snapshot.policy.match(wire.text_to_name("x.n42.listed.example"))
    print("blocked" if verdict is not None else "not blocked")
"""
WRITER = """
import sys
from pathlib import Path
from resolver.sources.config import load_config
from resolver.sources.shared import pack, write_image
from resolver.sources.snapshot import build_snapshot
image, light = pack(build_snapshot(load_config(Path(sys.argv[1]))))
write_image(Path(sys.argv[2]), image, light, {})
"""


def run(code: str, seed: str, *args: Path) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_processes_with_one_hash_seed_share_an_image(tmp_path: Path) -> None:
    config = write_files(tmp_path)
    path = tmp_path / "policy.image"
    run(WRITER, "1234", config, path)
    assert run(READER, "1234", path) == "blocked"
    assert run(READER, "4321", path).startswith("refused: built by a process with another")


def test_names_gained_and_lost_count_as_the_control_endpoint_counts(
    built: BuildResult, tmp_path: Path
) -> None:
    from resolver.tools import control

    (tmp_path / "names.txt").write_text("\n".join(LISTED[100:]) + "\nfresh.example\n")
    later = build_snapshot(load_config(tmp_path / "sinkhole.yaml"))
    _, light = pack(built)
    assert name_changes(light, later) == control.name_changes(built, later)
    assert name_changes(light, later)["a"] == (1, 100)


def test_entries_read_from_an_image_as_from_the_build(built: BuildResult, tmp_path: Path) -> None:
    """GET /entries of a serving process (its policy read from the image) gives the lines
    sinkhole diff makes from the files."""
    image, light = pack(built)
    path = tmp_path / "policy.image"
    write_image(path, image, light, None)
    mapped, _ = read_image(path)
    assert b"".join(entry_lines(mapped)) == b"".join(entry_lines(built))
