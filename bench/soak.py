#!/usr/bin/env python3
"""The soak's figures per minute, from what soak.sh wrote.

  soak.py SOAK_DIR RESULTS_DIR

reads SOAK_DIR/lat-M (one latency per line, in microseconds, of every answer to a
query sent in minute M) and RESULTS_DIR/soak-chunks.tsv, soak-samples.tsv and
soak-reloads.tsv; writes RESULTS_DIR/soak-minutes.tsv: per minute the answers, the
queries sent, completed and lost by the dnsperf chunks that started in it, latency
percentiles, memory and cache at the minute's last sample, and its reloads.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

Row = dict[str, str]
HEAD = [
    "minute", "answers", "sent", "completed", "lost", "p50_ms", "p99_ms", "p999_ms", "max_ms",
    "rss_mib", "pss_mib", "cache_entries", "reloads",
]  # fmt: skip


def rows(path: Path) -> list[Row]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def minute_of(seconds: str) -> int:
    try:
        return int(float(seconds) // 60)
    except ValueError:
        return -1


def percentile_ms(values: list[int], p: float) -> str:
    if not values:
        return "nan"
    return f"{values[min(len(values) - 1, int(p / 100.0 * len(values)))] / 1000:.3f}"


def total(chunks: list[Row], key: str) -> str:
    try:
        return str(sum(int(c[key]) for c in chunks))
    except ValueError:
        return "nan"


def main(soak_dir: Path, res: Path) -> None:
    chunks = rows(res / "soak-chunks.tsv")
    samples = rows(res / "soak-samples.tsv")
    reloads = rows(res / "soak-reloads.tsv")
    minutes = sorted(int(p.name.split("-")[1]) for p in soak_dir.glob("lat-*"))
    minutes = sorted(set(minutes) | {minute_of(c["start_s"]) for c in chunks} - {-1})
    with (res / "soak-minutes.tsv").open("w") as out:
        out.write("\t".join(HEAD) + "\n")
        for m in minutes:
            lat_file = soak_dir / f"lat-{m}"
            lat = sorted(int(x) for x in lat_file.read_text().split()) if lat_file.exists() else []
            mine = [c for c in chunks if minute_of(c["start_s"]) == m]
            last = [s for s in samples if minute_of(s["t_s"]) == m][-1:]
            sample = last[0] if last else {}
            done = [r for r in reloads if minute_of(r["t_s"]) == m]
            out.write(
                "\t".join(
                    [
                        str(m + 1),
                        str(len(lat)),
                        total(mine, "sent"),
                        total(mine, "completed"),
                        total(mine, "lost"),
                        percentile_ms(lat, 50),
                        percentile_ms(lat, 99),
                        percentile_ms(lat, 99.9),
                        f"{lat[-1] / 1000:.3f}" if lat else "nan",
                        sample.get("rss_mib", "-"),
                        sample.get("pss_mib", "-"),
                        sample.get("cache_entries", "-"),
                        " ".join(f"{r['kind']}@{r['t_s']}s" for r in done) or "-",
                    ]
                )
                + "\n"
            )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
