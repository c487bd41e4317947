"""The pid file: where it is by default, held while the server runs, stale when it is not."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from resolver.service.pidfile import (
    BUILT_IN,
    Holder,
    PidFile,
    PidFileError,
    default_path,
    find,
    path_of,
)
from resolver.sources.config import Config


@pytest.mark.parametrize(
    ("env", "euid", "expected"),
    [
        ({"RUNTIME_DIRECTORY": "/run/sinkhole"}, 990, "/run/sinkhole/sinkhole.pid"),
        ({"RUNTIME_DIRECTORY": "/run/a:/run/b"}, 0, "/run/a/sinkhole.pid"),
        ({}, 0, "/run/sinkhole/sinkhole.pid"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/sinkhole/sinkhole.pid"),
        ({"XDG_RUNTIME_DIR": "/run/user/0"}, 0, "/run/sinkhole/sinkhole.pid"),
    ],
)
def test_default_path(env: dict[str, str], euid: int, expected: str) -> None:
    assert default_path(env, euid) == Path(expected)


def test_default_path_without_a_runtime_directory_is_the_users_own() -> None:
    path = default_path({}, 1234)
    assert path.parent.name == "sinkhole-1234" and path.name == "sinkhole.pid"


def test_path_of_follows_the_configuration(tmp_path: Path) -> None:
    assert path_of(Config(pid_file=False)) is None
    assert path_of(Config(pid_file=tmp_path / "s.pid")) == tmp_path / "s.pid"
    assert path_of(Config()) == default_path()


def test_held_found_released(tmp_path: Path) -> None:
    path = tmp_path / "run" / "s.pid"
    held = PidFile.take(path, "/etc/sinkhole/config.yaml")
    assert path.read_text() == f"{os.getpid()}\n/etc/sinkhole/config.yaml\n"
    assert find(path) == Holder(os.getpid(), "/etc/sinkhole/config.yaml")
    held.release()
    assert not path.exists()
    assert find(path) is None
    held.release()  # twice: nothing more happens


def test_a_second_server_cannot_take_a_held_file(tmp_path: Path) -> None:
    path = tmp_path / "s.pid"
    held = PidFile.take(path, BUILT_IN)
    try:
        with pytest.raises(PidFileError) as info:
            PidFile.take(path, "/other.yaml")
        assert info.value.holder == os.getpid()
        assert find(path) == Holder(os.getpid(), BUILT_IN)  # unchanged
    finally:
        held.release()


def test_a_file_nobody_holds_is_stale(tmp_path: Path) -> None:
    path = tmp_path / "s.pid"
    path.write_text("1\n/etc/sinkhole/config.yaml\n")  # pid 1 is alive, but holds no lock
    assert find(path) is None
    held = PidFile.take(path, BUILT_IN)  # taken over
    try:
        assert find(path) == Holder(os.getpid(), BUILT_IN)
    finally:
        held.release()


def test_an_unwritable_place_is_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PidFileError) as info:
        PidFile.take(blocker / "s.pid", BUILT_IN)  # its directory is a file
    assert info.value.holder is None and str(blocker) in str(info.value)


def test_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (tmp_path / "s.pid").symlink_to(target)
    with pytest.raises(PidFileError):
        PidFile.take(tmp_path / "s.pid", BUILT_IN)
    assert target.read_text() == "keep me\n"


def test_in_the_shared_temporary_directory_only_a_folder_of_our_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = default_path({}, 4321)
    assert path.parent.parent == tmp_path
    held = PidFile.take(path, BUILT_IN)  # made, 0700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    held.release()

    open_to_all = tmp_path / "open" / "s.pid"
    open_to_all.parent.mkdir()
    open_to_all.parent.chmod(0o777)
    planted = tmp_path / "planted" / "s.pid"
    planted.parent.symlink_to(tmp_path / "open")
    for where in (open_to_all, planted):
        with pytest.raises(PidFileError) as info:
            PidFile.take(where, BUILT_IN)
        assert "not this user's own" in str(info.value)
