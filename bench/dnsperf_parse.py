#!/usr/bin/env python3
"""Turn one dnsperf run into one line of numbers.

  dnsperf_parse.py SUMMARY VLINES TICKS0 TICKS1 CLK_TCK "USER SYS REAL" [BUSY0 BUSY1]

prints: sent completed lost qps avg_ms p50_ms p99_ms noerror_pct server_cpu_pct client_cpu_pct
        other_cpu_pct

SUMMARY is dnsperf's report, VLINES its ``-v`` output (one "> RCODE name type latency"
line per response, from which the percentiles come). TICKS0/TICKS1 are the server's CPU
clock ticks before and after the run; USER SYS REAL is dnsperf's own ``time``. CPU
percentages are over dnsperf's "Run time"; 100 = one core. BUSY0/BUSY1 are the clock
ticks all cores spent busy (/proc/stat) before and after: other_cpu_pct is what the
rest of the machine used meanwhile (other processes, the fake upstream, the kernel's
interrupt work for the traffic), over dnsperf's wall time. Unknown values print "nan".
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

NAN = "nan"


def grab(text: str, pattern: str, default: str = NAN) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else default


def latencies(path: Path) -> list[float]:
    out = []
    with path.open(errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                try:
                    out.append(float(line.split()[-1]))
                except ValueError:
                    continue
    out.sort()
    return out


def percentile_ms(sorted_values: list[float], p: float) -> str:
    if not sorted_values:
        return NAN
    index = min(len(sorted_values) - 1, int(p / 100.0 * len(sorted_values)))
    return f"{sorted_values[index] * 1000:.3f}"


def as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def main(argv: list[str]) -> None:
    summary_path, vlines, ticks0, ticks1, clk_tck, times = argv[:6]
    busy0, busy1 = [*argv[6:8], NAN, NAN][:2]
    summary = Path(summary_path).read_text(errors="replace")
    sent = grab(summary, r"Queries sent:\s+(\d+)")
    completed = grab(summary, r"Queries completed:\s+(\d+)")
    lost = grab(summary, r"Queries lost:\s+(\d+)")
    qps = grab(summary, r"Queries per second:\s+([\d.]+)")
    avg = as_float(grab(summary, r"Average Latency \(s\):\s+([\d.]+)"))
    noerror = int(grab(summary, r"NOERROR (\d+)", "0"))
    runtime = as_float(grab(summary, r"Run time \(s\):\s+([\d.]+)"))
    lat = latencies(Path(vlines))

    avg_ms = f"{avg * 1000:.3f}" if avg == avg else NAN
    noerror_pct = f"{100.0 * noerror / int(completed):.1f}" if completed not in (NAN, "0") else NAN
    server_cpu = client_cpu = other_cpu = NAN
    hz = float(clk_tck)
    ticks = as_float(ticks1) - as_float(ticks0)
    fields = [as_float(x) for x in times.split()]
    timed = len(fields) == 3 and all(x == x for x in fields)
    if runtime == runtime and runtime > 0:
        if ticks == ticks:
            server_cpu = f"{100.0 * ticks / hz / runtime:.0f}"
        if timed:
            client_cpu = f"{100.0 * (fields[0] + fields[1]) / runtime:.0f}"
    busy = as_float(busy1) - as_float(busy0)
    if busy == busy and timed and fields[2] > 0:
        mine = (ticks if ticks == ticks else 0.0) / hz + fields[0] + fields[1]
        other_cpu = f"{max(0.0, 100.0 * (busy / hz - mine) / fields[2]):.0f}"
    print(
        sent, completed, lost, qps, avg_ms, percentile_ms(lat, 50), percentile_ms(lat, 99),
        noerror_pct, server_cpu, client_cpu, other_cpu,
    )  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
