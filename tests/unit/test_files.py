"""User files opened one way: regular files only, never blocking, capped, decompressed, UTF-8."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from resolver.core.errors import ConfigError, PolicyError, SourceError, quote
from resolver.sources import files
from resolver.sources.config import load_config
from resolver.sources.files import KiB, MiB, decode, open_binary, read_bytes, read_text
from resolver.sources.policy_yaml import load_policy, parse_policy

PROMPT = 5.0  # seconds an error may take, at most (a blocked read never ends)


def promptly(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; its exception (None if it returned), failing the test
    when it has not finished within PROMPT seconds (it would block forever on a FIFO)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(PROMPT)
    assert not thread.is_alive(), f"still blocked after {time.monotonic() - started:.1f} s"
    return outcome[0]


def failure(call: Callable[[], object]) -> SourceError:
    exc = promptly(call)
    assert isinstance(exc, SourceError), exc
    return exc


# --- what is not a regular file -----------------------------------------------------------


def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "policy.yaml"
    os.mkfifo(fifo)
    error = failure(lambda: read_text(fifo, "policy file"))
    assert error.source == str(fifo)
    assert "FIFO" in error.message and "cannot read the policy file" in error.message


def test_a_fifo_swapped_in_after_the_stat_is_refused_without_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "list.txt"
    os.mkfifo(fifo)
    # The stat before opening saw a regular file; the open descriptor is checked again.
    monkeypatch.setattr(files, "file_problem", lambda path: None)
    error = failure(lambda: read_bytes(fifo, "list"))
    assert "FIFO" in error.message


def test_a_fifo_policy_and_configuration(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    policy_error = failure(lambda: load_policy(fifo))
    assert isinstance(policy_error, PolicyError) and policy_error.source == str(fifo)
    config_error = failure(lambda: load_config(fifo))
    assert isinstance(config_error, ConfigError)
    assert str(config_error).startswith(f"{fifo}: cannot read the configuration: it is a FIFO")


def test_a_directory(tmp_path: Path) -> None:
    error = failure(lambda: read_text(tmp_path, "zone file"))
    assert error.message == "cannot read the zone file: it is a directory, not a file"


def test_a_socket_and_a_device(tmp_path: Path) -> None:
    path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        assert "socket" in failure(lambda: read_bytes(path)).message
    finally:
        server.close()
    assert "device" in failure(lambda: read_bytes(Path("/dev/zero"))).message


def test_a_symlink_loop_is_named_a_loop(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    error = failure(lambda: load_policy(tmp_path / "a.yaml"))
    assert "symbolic links form a loop" in error.message
    assert error.source == str(tmp_path / "a.yaml")


def test_a_symlink_to_a_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("text\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    assert read_text(tmp_path / "link.txt") == "text\n"


def test_missing_and_unreadable(tmp_path: Path) -> None:
    missing = failure(lambda: read_bytes(tmp_path / "absent.txt", "list"))
    assert missing.message == "cannot read the list: it does not exist"
    below_a_file = tmp_path / "file"
    below_a_file.write_text("")
    assert "not a directory" in failure(lambda: read_bytes(below_a_file / "x")).message
    assert files.file_problem(tmp_path / "absent.txt") == "it does not exist"
    assert files.file_problem(below_a_file) is None


# --- the cap --------------------------------------------------------------------------------


def test_a_file_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as f:
        f.truncate(200 * MiB)  # sparse: 200 MiB by its size, nothing written
    tracemalloc.start()
    try:
        error = failure(lambda: load_policy(huge))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.message == "the policy file is larger than 128 MiB, the limit"
    assert peak < 1 * MiB


def test_the_cap_names_its_setting(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"a.example\n" * 200)
    error = failure(lambda: read_bytes(path, "list", 1 * KiB, PolicyError, "max_file_size"))
    assert isinstance(error, PolicyError)
    assert "larger than 1 KiB" in error.message and "max_file_size" in error.message
    assert read_bytes(path, "list", 2000) == b"a.example\n" * 200  # exactly at the cap


def test_a_file_growing_past_the_cap_while_read(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(b"x" * 100)
    with open_binary(path, "list", 1 * KiB) as f:
        with open(path, "ab") as more:
            more.write(b"y" * 2 * KiB)
        with pytest.raises(SourceError, match="larger than 1 KiB"):
            f.read()


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.compress,
    ".xz": lzma.compress,
    ".bz2": bz2.compress,
}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_files_are_read_transparently(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"list{suffix}"
    path.write_bytes(COMPRESSORS[suffix]("café.example\n".encode()))
    assert read_text(path) == "café.example\n"


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_decompression_bomb_stops_at_the_cap_in_bounded_memory(
    tmp_path: Path, suffix: str
) -> None:
    bomb = tmp_path / f"bomb{suffix}"
    bomb.write_bytes(COMPRESSORS[suffix](bytes(64 * MiB)))
    assert bomb.stat().st_size < 1 * MiB
    tracemalloc.start()
    try:
        error = failure(lambda: read_bytes(bomb, "zone file", 2 * MiB, setting="max_file_size"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "larger than 2 MiB after decompression" in error.message
    # The cap, twice (read and joined), and the decoder's own state (xz: an 8 MiB
    # dictionary): nothing near the 64 MiB the bomb holds.
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"


@pytest.mark.parametrize(("suffix", "kind"), [(".gz", "gzip"), (".xz", "xz"), (".bz2", "bzip2")])
def test_corrupt_compressed_files(tmp_path: Path, suffix: str, kind: str) -> None:
    path = tmp_path / f"list{suffix}"
    path.write_bytes(b"plain text, not compressed\n")
    error = failure(lambda: read_bytes(path, "list"))
    assert error.message.startswith(f"cannot read the list: not valid {kind} data")
    truncated = tmp_path / f"cut{suffix}"
    truncated.write_bytes(COMPRESSORS[suffix](b"a.example\n" * 1000)[:-8])
    assert "cannot read the list" in failure(lambda: read_bytes(truncated, "list")).message


# --- text --------------------------------------------------------------------------------


def test_bad_utf8_names_line_and_column() -> None:
    with pytest.raises(PolicyError) as info:
        decode(b"id: p\ntitle: Caf" + b"\xe9 r\xc3\xa9sum\xc3\xa9\n", "p.yaml", PolicyError)
    err = info.value
    assert (err.source, err.line, err.column) == ("p.yaml", 2, 11)
    assert "byte 0xe9" in err.message and "UTF-8" in err.message
    assert str(err).startswith("p.yaml:2:11: not UTF-8 text")


def test_bad_utf8_column_counts_characters() -> None:
    with pytest.raises(SourceError) as info:
        decode("a\nbé€x".encode() + b"\xff", "f")
    assert (info.value.line, info.value.column) == (2, 5)


def test_bad_utf8_in_files(tmp_path: Path) -> None:
    policy = tmp_path / "latin1.yaml"
    policy.write_bytes("id: p\nblock:\n  - caf\xe9.example\n".encode("latin-1"))
    error = failure(lambda: load_policy(policy))
    assert (error.line, error.column) == (3, 8)
    config = tmp_path / "sinkhole.yaml"
    config.write_bytes(b"listen: ['127.0.0.1:53']\n# \xff\n")
    error = failure(lambda: load_config(config))
    assert isinstance(error, ConfigError) and (error.line, error.column) == (2, 3)
    zone = tmp_path / "z.rpz.gz"
    zone.write_bytes(gzip.compress(b"a CNAME .\nb\xfe CNAME .\n"))
    error = failure(lambda: read_text(zone, "zone file"))
    assert (error.source, error.line, error.column) == (str(zone), 2, 2)


# --- long values in messages ---------------------------------------------------------------


def test_quote_keeps_short_values_as_repr() -> None:
    for value in ("a.example", "it's", 12, None, b"\x00"):
        assert quote(value) == repr(value)


def test_quote_cuts_long_values() -> None:
    shown = quote("x" * 5_000_000)
    assert len(shown) < 250
    assert shown.startswith("'xxx") and shown.endswith("... (5,000,000 characters)")
    assert len(quote("\x00" * 1000)) < 250  # escapes do not make it longer than the cap
    assert len(quote(list(range(10_000)))) < 250
    assert quote(b"y" * 1000).endswith("(1,000 bytes)")


def test_a_source_error_message_is_bounded() -> None:
    error = SourceError("m" * 1_000_000, "f", 1, 1)
    assert len(str(error)) < 5000


def test_a_five_megabyte_policy_line_gives_a_short_error(tmp_path: Path) -> None:
    value = "a" * (5 * MiB)
    cases = [
        f"id: p\nblock:\n  - {value}.example\n",  # a name far too long
        f"id: p\nblock:\n  - https://{value}/page\n",  # a URL: quoted twice once
        f"id: p\n{value}: 1\n",  # an unknown key
        f"id: p\naction: {value}\n",  # a wrong value
        f"id: p\nclients: [{value}]\n",  # not a network
        f"id: p\nblock:\n  - a.example\n  - {{name: b.example, reason: [{value}]}}\n",
    ]
    for text in cases:
        with pytest.raises(PolicyError) as info:
            parse_policy(text, "p.yaml", tmp_path)
        shown = str(info.value)
        assert len(shown) < 1000, shown[:300]
        assert info.value.line >= 2
