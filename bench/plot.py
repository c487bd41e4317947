#!/usr/bin/env python3
"""Bar chart of QPS per workload and system (median bar, min-max whisker).

  plot.py perf.tsv out.png

The QPS axis is logarithmic: the systems differ by orders of magnitude.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def label(qps: float) -> str:
    return f"{qps / 1000:.1f}k" if qps >= 1000 else f"{qps:.0f}"


def main(perf_path: Path, out: Path) -> None:
    with perf_path.open() as f:
        perf = [r for r in csv.DictReader(f, delimiter="\t") if r["qps"] not in ("", "nan")]
    if not perf:
        sys.exit("no QPS figures to plot")
    workloads = list(dict.fromkeys(r["workload"] for r in perf))
    systems = list(dict.fromkeys(r["sut"] for r in perf))
    width = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.8 * len(workloads)), 5.0), dpi=110)
    for i, system in enumerate(systems):
        xs, meds, lows, highs = [], [], [], []
        for j, w in enumerate(workloads):
            q = [float(r["qps"]) for r in perf if r["sut"] == system and r["workload"] == w]
            if not q:
                continue
            m = statistics.median(q)
            xs.append(j - 0.4 + width * (i + 0.5))
            meds.append(m)
            lows.append(m - min(q))
            highs.append(max(q) - m)
        bars = ax.bar(xs, meds, width, label=system, yerr=[lows, highs], capsize=2)
        ax.bar_label(bars, labels=[label(m) for m in meds], fontsize=7, padding=2)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_ylabel("queries per second (log scale)")
    runs = len({r["rep"] for r in perf})
    ax.set_title(f"QPS at saturation, median of {runs} run(s), whiskers min-max")
    ax.legend(fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
