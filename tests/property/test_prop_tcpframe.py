"""The TCP framer gives back exactly the messages sent, however the stream is cut."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from resolver.core.tcpframe import Framer, frame


@given(
    messages=st.lists(st.binary(max_size=700), max_size=8),
    cuts=st.lists(st.integers(0, 6000), max_size=20),
)
def test_any_chunking_reassembles_the_messages(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    framer = Framer()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += framer.feed(stream[start:end])
        assert framer.pending == end - sum(len(m) + 2 for m in out)
    assert out == messages
    assert framer.pending == 0


@given(messages=st.lists(st.binary(max_size=40), min_size=1, max_size=5), keep=st.integers(1, 200))
def test_partial_message_is_held_back(messages: list[bytes], keep: int) -> None:
    stream = b"".join(frame(m) for m in messages)
    keep = min(keep, len(stream))
    framer = Framer()
    received = framer.feed(stream[:-keep])
    assert received == messages[: len(received)]
    assert framer.pending + sum(len(m) + 2 for m in received) == len(stream) - keep
    assert received + framer.feed(stream[-keep:]) == messages
