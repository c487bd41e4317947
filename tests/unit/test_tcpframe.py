"""DNS over TCP framing: messages come out whole however the stream is cut."""

from __future__ import annotations

from resolver.core.tcpframe import Framer, frame

MESSAGES = [b"first message", b"", b"x" * 300, b"\x00\x01\x02", b"y" * 65535]


def test_frame_prefixes_the_length() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame(b"") == b"\x00\x00"
    assert frame(b"z" * 258)[:2] == b"\x01\x02"


def test_one_frame_in_one_feed() -> None:
    framer = Framer()
    assert framer.feed(frame(b"hello")) == [b"hello"]
    assert framer.pending == 0


def test_zero_length_message() -> None:
    framer = Framer()
    assert framer.feed(b"\x00\x00") == [b""]
    assert framer.feed(b"\x00") == []
    assert framer.feed(b"\x00" + frame(b"a")) == [b"", b"a"]
    assert framer.pending == 0


def test_several_frames_in_one_feed() -> None:
    framer = Framer()
    assert framer.feed(b"".join(frame(m) for m in MESSAGES)) == MESSAGES
    assert framer.pending == 0


def test_frame_split_across_feeds() -> None:
    framer = Framer()
    data = frame(b"split message")
    assert framer.feed(data[:1]) == []
    assert framer.pending == 1
    assert framer.feed(data[1:5]) == []
    assert framer.pending == 5
    assert framer.feed(data[5:]) == [b"split message"]
    assert framer.pending == 0


def test_complete_frame_followed_by_a_partial_one() -> None:
    framer = Framer()
    data = frame(b"one") + frame(b"two")
    assert framer.feed(data[:-1]) == [b"one"]
    assert framer.pending == len(frame(b"two")) - 1
    assert framer.feed(data[-1:]) == [b"two"]


def test_one_byte_at_a_time() -> None:
    framer = Framer()
    stream = b"".join(frame(m) for m in MESSAGES)
    out: list[bytes] = []
    for i in range(len(stream)):
        out += framer.feed(stream[i : i + 1])
    assert out == MESSAGES
    assert framer.pending == 0


def test_empty_feed() -> None:
    framer = Framer()
    assert framer.feed(b"") == []
    assert framer.feed(b"\x00") == []
    assert framer.feed(b"") == []
    assert framer.pending == 1
