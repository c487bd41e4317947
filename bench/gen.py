#!/usr/bin/env python3
"""Synthetic, deterministic data for the benchmark (all query files in dnsperf format).

  gen.py static OUTDIR             nsd zone for bench.test, cache-hit query files
  gen.py blocklist N OUTDIR        names-N.txt (N blocked names) and q-blocked-N.txt
  gen.py format FMT N OUTDIR       the N names as one system's block list:
                                   hosts (dnsmasq addn-hosts), rpz (unbound, pdns),
                                   dnslib (dnslib.intercept zone text)
  gen.py miss TAG COUNT OUT        COUNT unique, never-seen names under bench.test
  gen.py mix TAG COUNT N DATA OUT  10% blocked (list N), 80% cache hits, 10% unique misses

The N-name list is a prefix of every bigger list (same seed), so names-1000.txt holds
the first 1,000 names of names-1000000.txt.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

WARN_A = "192.0.2.80"
WARN_AAAA = "2001:db8::80"
TLDS = ("com", "net", "org", "info", "io", "xyz", "biz", "co", "ru", "de", "top", "club")
SYLLABLES = (
    "ad", "trk", "px", "cdn", "stat", "log", "met", "ri", "ka", "zo", "mi", "net",
    "pro", "go", "bo", "an", "ly", "tic", "ser", "ve", "clk", "pix", "ban", "ner",
)  # fmt: skip
PREFIXES = ("www", "api", "img", "t", "s1", "ads", "track")
HIT_N = 1000
QUERIES = 200_000


def rand_name(rng: random.Random) -> str:
    """A random-looking registrable name, sometimes with a host label in front."""
    parts = [
        "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))
        + f"{rng.getrandbits(rng.choice((12, 20, 28))):x}"
        for _ in range(rng.choice((1, 1, 2)))
    ]
    if rng.random() < 0.3:
        parts.insert(0, rng.choice(PREFIXES))
    return ".".join(parts) + "." + rng.choice(TLDS)


def names(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        name = rand_name(rng)
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def read_names(n: int, outdir: Path) -> list[str]:
    return (outdir / f"names-{n}.txt").read_text().split()


def blocklist(n: int, outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    listed = names(n)
    (outdir / f"names-{n}.txt").write_text("\n".join(listed) + "\n")
    rng = random.Random(2)
    (outdir / f"q-blocked-{n}.txt").write_text(
        "".join(f"{rng.choice(listed)} A\n" for _ in range(QUERIES))
    )


def block_format(fmt: str, n: int, outdir: Path) -> None:
    listed = read_names(n, outdir)
    if fmt == "hosts":
        text = "".join(f"{WARN_A} {nm}\n{WARN_AAAA} {nm}\n" for nm in listed)
    elif fmt == "rpz":
        text = (
            "$ORIGIN rpz.bench.\n$TTL 60\n"
            "@ SOA localhost. root.localhost. 1 3600 600 86400 60\n@ NS localhost.\n"
        ) + "".join(f"{nm} A {WARN_A}\n{nm} AAAA {WARN_AAAA}\n" for nm in listed)
    elif fmt == "dnslib":
        text = "".join(f"{nm}. 60 IN A {WARN_A}\n{nm}. 60 IN AAAA {WARN_AAAA}\n" for nm in listed)
    else:
        sys.exit(f"unknown format {fmt!r}")
    (outdir / f"{fmt}-{n}").write_text(text)


def static(outdir: Path) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "bench.test.zone").write_text(
        "$ORIGIN bench.test.\n$TTL 300\n"
        "@ SOA ns.bench.test. root.bench.test. 1 3600 600 86400 300\n"
        "@ NS ns.bench.test.\nns A 127.0.0.1\n"
        "* 300 IN A 198.51.100.7\n* 300 IN AAAA 2001:db8::7\n"
    )
    hits = [f"h{i}.hit.bench.test" for i in range(HIT_N)]
    (outdir / "q-hit-uniq.txt").write_text("".join(f"{h} A\n" for h in hits))
    rng = random.Random(3)
    (outdir / "q-hit.txt").write_text("".join(f"{rng.choice(hits)} A\n" for _ in range(QUERIES)))


def miss(tag: str, count: int, out: Path) -> None:
    out.write_text("".join(f"m{i:x}.{tag}.miss.bench.test A\n" for i in range(count)))


def mix(tag: str, count: int, n: int, outdir: Path, out: Path) -> None:
    blocked = read_names(n, outdir)
    rng = random.Random(tag)
    lines = []
    unique = 0
    for _ in range(count):
        r = rng.random()
        if r < 0.10:
            lines.append(f"{rng.choice(blocked)} A\n")
        elif r < 0.90:
            lines.append(f"h{rng.randrange(HIT_N)}.hit.bench.test A\n")
        else:
            lines.append(f"m{unique:x}.{tag}.mix.bench.test A\n")
            unique += 1
    out.write_text("".join(lines))


def main(argv: list[str]) -> None:
    match argv:
        case ["static", outdir]:
            static(Path(outdir))
        case ["blocklist", n, outdir]:
            blocklist(int(n), Path(outdir))
        case ["format", fmt, n, outdir]:
            block_format(fmt, int(n), Path(outdir))
        case ["miss", tag, count, out]:
            miss(tag, int(count), Path(out))
        case ["mix", tag, count, n, outdir, out]:
            mix(tag, int(count), int(n), Path(outdir), Path(out))
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
