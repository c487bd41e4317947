"""A lone server's reload built in a forked child: the image it writes, the names each
policy gained and lost, and its failures as the exceptions the server reports."""

from __future__ import annotations

import asyncio
import os
import pickle
from pathlib import Path

import pytest

from resolver.core import wire
from resolver.core.errors import PolicyError, SourceError
from resolver.service.childbuild import IMAGE, build_in_child, fork_available
from resolver.service.reloads import build_packed
from resolver.sources.config import load_config

pytestmark = pytest.mark.skipif(not fork_available(), reason="needs fork")


def write(folder: Path, names: list[str], extra: str = "") -> Path:
    (folder / "names.txt").write_text("".join(f"{n}\n" for n in names))
    (folder / "p.yaml").write_text(
        "id: p\ntitle: P\naction: nxdomain\nlists:\n  - file: names.txt\n" + extra
    )
    config = folder / "sinkhole.yaml"
    config.write_text('listen: ["127.0.0.1:5399"]\npolicies: ["p.yaml"]\n')
    return config


def test_the_child_builds_the_image_and_counts_the_changes(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["a.example", "b.example"]))
    previous, _ = build_packed(config, None)
    config = load_config(write(tmp_path, ["b.example", "c.example", "d.example"]))
    result, changes = asyncio.run(build_in_child(config, previous, tmp_path))
    assert (tmp_path / IMAGE).is_file()
    policy = result.snapshot.policy
    assert policy.names() == 3
    for name, blocked in (("c.example", True), ("x.d.example", True), ("a.example", False)):
        assert (policy.match(wire.text_to_name(name)) is not None) is blocked
    assert changes == {"p": (2, 1)}


def test_a_broken_policy_comes_back_as_the_error_with_its_line(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["a.example"], "block: [unclosed\n"))
    with pytest.raises(PolicyError) as caught:
        asyncio.run(build_in_child(config, None, tmp_path))
    assert caught.value.source.endswith("p.yaml") and caught.value.line == 7
    assert "the '[' on line 6 is not closed" in caught.value.message
    assert not (tmp_path / IMAGE).exists()


def test_a_missing_list_is_an_error_too(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ["a.example"]))
    os.unlink(tmp_path / "names.txt")
    with pytest.raises((SourceError, OSError)) as caught:
        asyncio.run(build_in_child(config, None, tmp_path))
    assert "names.txt" in str(caught.value)


def test_source_errors_survive_pickling() -> None:
    error = PolicyError("a message", "p.yaml", 3, 7)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is PolicyError and str(copy) == str(error) == "p.yaml:3:7: a message"
