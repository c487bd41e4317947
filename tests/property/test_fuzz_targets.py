"""The fuzz harness (fuzz/), a short deterministic run of every target.

Contract for each parser (fuzz/targets.py): accepted, or rejected with our own error
(a ResolverError subclass), never any other exception, within a bounded time. Here:
the committed corpus replayed, a fixed number of mutated inputs from a fixed seed,
and inputs from hypothesis with derandomize (the same inputs every run). Longer runs:
``python -m fuzz run --seconds 600`` (CONTRIBUTING.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.__main__ import main
from fuzz.mutate import Mutator
from fuzz.targets import TARGETS, Target, Violation, check, corpus
from resolver.core.errors import FormError

SEED = 20240601
# Mutated inputs per target: about two seconds for all targets together.
MUTATIONS = {"query": 1500, "reply": 1500, "tcp": 800, "policy": 150, "zone": 120, "rpz": 120}
FILE_MUTATIONS = 150  # the list readers write a file per input
EXAMPLES = 40  # hypothesis inputs per target

quick = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ids = list(TARGETS)


@pytest.mark.parametrize("name", ids)
def test_every_target_has_a_seed_corpus(name: str) -> None:
    seeds = corpus(TARGETS[name])
    assert seeds, f"no seed inputs in fuzz/corpus/{name}/"
    assert sum(map(len, seeds)) < 4096, "keep the committed corpus small"


@pytest.mark.parametrize("name", ids)
def test_corpus_inputs_keep_the_contract(name: str) -> None:
    target = TARGETS[name]
    outcomes = [check(target, data) for data in corpus(target)]
    assert True in outcomes, "the corpus should hold at least one input the parser accepts"


@pytest.mark.parametrize("name", ids)
def test_mutated_inputs_keep_the_contract(name: str) -> None:
    target = TARGETS[name]
    mutator = Mutator(SEED, corpus(target), target.tokens)
    accepted = sum(
        check(target, mutator.next()) for _ in range(MUTATIONS.get(name, FILE_MUTATIONS))
    )
    assert accepted > 0, "no mutated input was accepted: the mutations never reach deep"


@pytest.mark.parametrize("name", ["query", "reply", "tcp"])
@quick
@given(data=st.binary(max_size=600))
def test_random_packets_keep_the_contract(name: str, data: bytes) -> None:
    check(TARGETS[name], data)


@pytest.mark.parametrize("name", ["policy", "domains", "hosts", "adblock", "csv", "zone", "rpz"])
@quick
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=300))
def test_random_text_keeps_the_contract(name: str, text: str) -> None:
    check(TARGETS[name], text.encode("utf-8", "surrogatepass"))


@quick
@given(seed=st.integers(0, 2**32), index=st.integers(0, 20))
def test_every_text_target_on_mutated_inputs_from_hypothesis_seeds(seed: int, index: int) -> None:
    for name in ("policy", "zone", "csv"):
        target = TARGETS[name]
        mutator = Mutator(seed, corpus(target), target.tokens)
        for _ in range(index % 3 + 1):
            check(target, mutator.next())


# --- the harness itself ----------------------------------------------------------------


def _raise(exc: Exception) -> None:
    raise exc


def test_check_tells_accepted_from_rejected() -> None:
    assert check(Target("ok", lambda data: None), b"x") is True
    assert check(Target("ours", lambda data: _raise(FormError("bad"))), b"x") is False


def test_check_reports_a_foreign_exception() -> None:
    with pytest.raises(Violation, match="KeyError") as info:
        check(Target("crash", lambda data: _raise(KeyError("k"))), b"\x00crash")
    assert info.value.data == b"\x00crash"


def test_check_reports_a_slow_input() -> None:
    with pytest.raises(Violation, match="took"):
        check(Target("slow", lambda data: time.sleep(0.05)), b"", limit=0.01)


def test_the_mutator_is_deterministic() -> None:
    first = Mutator(7, [b"abc", b"\x00\x01\x02"], (b"tok",))
    second = Mutator(7, [b"abc", b"\x00\x01\x02"], (b"tok",))
    assert [first.next() for _ in range(50)] == [second.next() for _ in range(50)]


def test_command_line_replay_and_a_short_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["replay"]) == 0
    crashes = tmp_path / "crashes"
    assert main(["run", "tcp", "--seconds", "0.2", "--seed", "1", "--crashes", str(crashes)]) == 0
    assert list(crashes.iterdir()) == []
    out = capsys.readouterr().out
    assert "tcp: " in out and "inputs" in out
    with pytest.raises(SystemExit):
        main(["run", "no-such-target"])
