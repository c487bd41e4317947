"""Run the fuzz targets: ``python -m fuzz [run|replay|list] ...`` (see fuzz/README.md).

    python -m fuzz list                       the targets and their corpus sizes
    python -m fuzz replay [TARGET ...]        every corpus input once
    python -m fuzz run [TARGET ...] --seconds 600 [--seed N] [--crashes DIR]
                                              mutated corpus inputs until time is up
    python -m fuzz atheris TARGET [libFuzzer options]
                                              coverage-guided, with atheris installed

A failing input is written to fuzz/crashes/TARGET-SHA (not committed); once fixed, copy
it into fuzz/corpus/TARGET/ so it stays tested.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import os
import sys
import time
from pathlib import Path

from fuzz.mutate import Mutator
from fuzz.targets import TARGETS, Target, Violation, check, corpus

CRASHES = Path(__file__).resolve().parent / "crashes"
WORK = Path(__file__).resolve().parent / "work"  # atheris's growing corpus (not committed)
HANG_AFTER = 60.0  # seconds; then the input in fuzz/crashes/current hangs the parser
STDERR = sys.__stderr__ or sys.stderr  # the process's own (a test may capture sys.stderr)


def save(violation: Violation, crashes: Path) -> Path:
    crashes.mkdir(exist_ok=True)
    digest = hashlib.sha256(violation.data).hexdigest()[:16]
    path = crashes / f"{violation.target}-{digest}"
    path.write_bytes(violation.data)
    return path


def run(targets: list[Target], seconds: float, seed: int, crashes: Path = CRASHES) -> int:
    """Mutate each target's corpus for its share of ``seconds``; 1 when anything broke.

    An input that hangs cannot be stopped from Python (a regular expression, say): the
    input under test is kept in ``crashes``/current, and after HANG_AFTER seconds the
    process prints every thread's stack and exits.
    """
    share = seconds / len(targets)
    failures = 0
    crashes.mkdir(exist_ok=True)
    current = os.open(crashes / "current", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for target in targets:
            mutator = Mutator(seed, corpus(target), target.tokens)
            deadline = time.monotonic() + share
            count = accepted = 0
            while time.monotonic() < deadline:
                data = mutator.next()
                count += 1
                os.ftruncate(current, 0)
                os.pwrite(current, data, 0)
                faulthandler.dump_traceback_later(HANG_AFTER, exit=True, file=STDERR)
                try:
                    accepted += check(target, data)
                except Violation as exc:
                    failures += 1
                    print(
                        f"FAIL {exc}\n  saved as {save(exc, crashes)} (seed {seed}, input {count})"
                    )
                finally:
                    faulthandler.cancel_dump_traceback_later()
            print(f"{target.name}: {count} inputs, {accepted} accepted (seed {seed})", flush=True)
    finally:
        os.close(current)
        os.unlink(crashes / "current")
    return 1 if failures else 0


def replay(targets: list[Target]) -> int:
    failures = 0
    for target in targets:
        inputs = corpus(target)
        for data in inputs:
            try:
                check(target, data)
            except Violation as exc:
                failures += 1
                print(f"FAIL {exc}")
        print(f"{target.name}: {len(inputs)} corpus inputs", flush=True)
    return 1 if failures else 0


def atheris_main(target: Target, argv: list[str]) -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2

    def one_input(data: bytes) -> None:
        check(target, data)

    # libFuzzer writes what it finds into its first corpus folder: a scratch one, so the
    # committed seeds stay as they are; failing inputs go to fuzz/crashes/.
    work = WORK / target.name
    work.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(exist_ok=True)
    options = [f"-artifact_prefix={CRASHES}/{target.name}-", *argv]
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *options, str(work), str(target.corpus)], one_input)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    p_replay = sub.add_parser("replay")
    p_replay.add_argument("targets", nargs="*", default=[])
    p_run = sub.add_parser("run")
    p_run.add_argument("targets", nargs="*", default=[])
    p_run.add_argument("--seconds", type=float, default=60.0)
    p_run.add_argument("--seed", type=int, default=int(time.time()))
    p_run.add_argument("--crashes", type=Path, default=CRASHES, help="where failing inputs go")
    p_atheris = sub.add_parser("atheris")
    p_atheris.add_argument("target", choices=list(TARGETS))
    args, rest = parser.parse_known_args(argv)
    if args.command == "list":
        for t in TARGETS.values():
            print(f"{t.name:8} {len(corpus(t)):3} seeds  {(t.run.__doc__ or '').splitlines()[0]}")
        return 0
    if args.command == "atheris":
        return atheris_main(TARGETS[args.target], rest)
    if rest:
        parser.error(f"unknown arguments: {' '.join(rest)}")
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"no target {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    targets = [TARGETS[n] for n in names]
    if args.command == "replay":
        return replay(targets)
    return run(targets, args.seconds, args.seed, args.crashes)


if __name__ == "__main__":
    sys.exit(main())
