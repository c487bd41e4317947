#!/usr/bin/env python3
"""The markdown report of one benchmark run, from the TSV files that run.sh wrote.

summarize.py RESULTS_DIR > latest.md
"""

from __future__ import annotations

import csv
import math
import statistics
import sys
from pathlib import Path

NAN = float("nan")
RATIO_BASES = ("unbound", "dnsmasq")
Row = dict[str, str]


def rows(path: Path) -> list[Row]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def num(text: str | None) -> float:
    try:
        return float(text) if text is not None else NAN
    except ValueError:
        return NAN


def med(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else NAN


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else NAN


def fmt(x: float, digits: int = 0) -> str:
    return "-" if math.isnan(x) else f"{x:,.{digits}f}"


def table(head: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in body),
        "",
    ]


def perf_section(perf: list[Row], order: list[str]) -> list[str]:
    workloads = list(dict.fromkeys(r["workload"] for r in perf))
    reps = len({r["rep"] for r in perf})

    def runs(s: str, w: str) -> list[Row]:
        return [r for r in perf if r["sut"] == s and r["workload"] == w]

    def qps(s: str, w: str) -> list[float]:
        return [num(r["qps"]) for r in runs(s, w)]

    out = [
        f"## Throughput at saturation: QPS, median of {reps} interleaved runs (min-max)",
        "",
    ]
    body = []
    for s in order:
        cells = []
        for w in workloads:
            q = [v for v in qps(s, w) if not math.isnan(v)]
            cells.append(f"{fmt(med(q))} ({fmt(min(q))}-{fmt(max(q))})" if q else "-")
        body.append([s, *cells])
    out += table(["system", *workloads], body)

    if "sinkhole" in order:
        bases = [b for b in RATIO_BASES if b in order]
        if bases:
            out += ["Ratio of median QPS, sinkhole / peer (above 1: sinkhole is faster)", ""]
            body = []
            for w in workloads:
                mine = med(qps("sinkhole", w))
                body.append([w, *(fmt(ratio(mine, med(qps(b, w))), 2) for b in bases)])
            out += table(["workload", *(f"sinkhole / {b}" for b in bases)], body)

    out += [
        "## Details (medians over runs; lost = total over all runs)",
        "",
        "Latency is per response (dnsperf -v) in a closed loop with a fixed window of"
        " outstanding queries, so at saturation it is mostly queueing. CPU: 100 = one core.",
        "",
    ]
    body = []
    for w in workloads:
        for s in order:
            rr = runs(s, w)
            if not rr:
                continue
            cpu = med([num(r["cpu_pct"]) for r in rr])
            median_qps = med(qps(s, w))
            lost = sum(int(v) for v in (num(r["lost"]) for r in rr) if not math.isnan(v))
            sent = sum(int(v) for v in (num(r["sent"]) for r in rr) if not math.isnan(v))
            body.append(
                [
                    w,
                    s,
                    fmt(median_qps),
                    fmt(med([num(r["avg_ms"]) for r in rr]), 2),
                    fmt(med([num(r["p50_ms"]) for r in rr]), 2),
                    fmt(med([num(r["p99_ms"]) for r in rr]), 2),
                    f"{lost:,} / {sent:,}",
                    fmt(min(num(r["noerror_pct"]) for r in rr), 1),
                    fmt(cpu),
                    fmt(med([num(r["client_cpu_pct"]) for r in rr])),
                ]
            )
    head = ["workload", "system", "QPS", "avg ms", "p50 ms", "p99 ms", "lost / sent"]
    head += ["NOERROR %", "server CPU %", "dnsperf CPU %"]
    out += table(head, body)
    return out


def latency_section(lat: list[Row], order: list[str]) -> list[str]:
    """Latency at a fixed rate of half the median saturation QPS."""
    workloads = list(dict.fromkeys(r["workload"] for r in lat))
    reps = len({r["rep"] for r in lat})
    body = []
    for w in workloads:
        for s in order:
            runs = [r for r in lat if r["sut"] == s and r["workload"] == w]
            if not runs:
                continue

            def m(key: str, runs: list[Row] = runs) -> float:
                return med([num(r[key]) for r in runs])

            worst = max((num(r["p99_ms"]) for r in runs), default=NAN)
            lost = sum(int(num(r["lost"])) for r in runs if not math.isnan(num(r["lost"])))
            sent = sum(int(num(r["sent"])) for r in runs if not math.isnan(num(r["sent"])))
            body.append(
                [
                    w,
                    s,
                    fmt(m("target_qps")),
                    fmt(m("qps")),
                    fmt(m("avg_ms"), 2),
                    fmt(m("p50_ms"), 2),
                    fmt(m("p99_ms"), 2),
                    fmt(worst, 2),
                    f"{lost:,} / {sent:,}",
                    fmt(m("cpu_pct")),
                ]
            )
    head = ["workload", "system", "rate (q/s)", "QPS", "avg ms", "p50 ms", "p99 ms"]
    head += ["worst p99 ms", "lost / sent", "server CPU %"]
    return [
        f"## Latency at half of saturation (fixed rate, medians of {reps} runs)",
        "",
        "Each system gets half of its own median saturation QPS for the workload above"
        " (dnsperf -Q), so the latency is the system's own, not queueing in front of it.",
        "",
        *table(head, body),
    ]


def settings_section(rows_: list[Row]) -> list[str]:
    body = []
    for w in dict.fromkeys(r["workload"] for r in rows_):
        for setting in dict.fromkeys(r["setting"] for r in rows_):
            runs = [r for r in rows_ if r["setting"] == setting and r["workload"] == w]
            if not runs:
                continue
            qps = [num(r["qps"]) for r in runs]
            body.append(
                [
                    w,
                    setting,
                    runs[0]["cpus"],
                    f"{fmt(med(qps))} ({fmt(min(qps))}-{fmt(max(qps))})",
                    fmt(med([num(r["p99_ms"]) for r in runs]), 2),
                    fmt(med([num(r["cpu_pct"]) for r in runs])),
                    fmt(med([num(r["client_cpu_pct"]) for r in runs])),
                ]
            )
    head = ["workload", "setting", "cores", "QPS", "p99 ms", "server CPU %", "dnsperf CPU %"]
    return [
        "## sinkhole settings: workers and the query log (QPS at saturation, median, min-max)",
        "",
        "`workers: 1` is pinned to the server core, as above. One worker per core runs on"
        " every core, where dnsperf (and the fake upstream) keep their core and so share it"
        " with a worker. The query log (default `blocked`; off in the runs above, like the"
        " peers' logs) writes one JSON line per logged query to a file.",
        "",
        *table(head, body),
    ]


def main(res: Path) -> None:
    out: list[str] = ["# Benchmark results", ""]
    header = res / "header.txt"
    if header.exists():
        out += [f"{line}  " for line in header.read_text().splitlines()] + [""]
    suts = rows(res / "suts.tsv")
    perf = rows(res / "perf.tsv")
    order = [r["sut"] for r in suts] or list(dict.fromkeys(r["sut"] for r in perf))
    up = res / "upstream.tsv"
    if up.exists():
        qps, cpu = [*up.read_text().split(), "-", "-"][:2]
        out += [
            f"Fake upstream (nsd) alone, unique names, dnsperf on the other core: {qps} QPS"
            f" at {cpu} % CPU; every forwarding figure below must stay well under it.",
            "",
        ]
    if suts:
        out += ["## Systems", ""]
        keys = ("sut", "version", "blocklist", "startup_s", "rss_start_mib", "rss_end_mib")
        head = ["system", "version", "blocked names", "ready after (s)"]
        head += ["RSS start (MiB)", "RSS end (MiB)"]
        out += table(head, [[r[k] for k in keys] for r in suts])
    if perf:
        out += perf_section(perf, order)
    lat = rows(res / "latency.tsv")
    if lat:
        out += latency_section(lat, order)
    settings = rows(res / "settings.tsv")
    if settings:
        out += settings_section(settings)
    load = rows(res / "load.tsv")
    if load:
        out += [
            "## Scale: load time, memory, reload under load",
            "",
            "Ready = seconds from start until a blocked name answers. During a fixed-rate"
            " blocked-name load (dnsperf -Q, 1 s timeout) a new name is added at t=3 s and"
            " the reload triggered; reload = seconds until the new name answers.",
            "",
        ]
        body = [
            [
                r["sut"],
                fmt(num(r["N"])),
                r["startup_s"],
                r["rss_mib"],
                r["reload_s"],
                f"{r['reload_sent']} / {r['reload_completed']} / {r['reload_lost']}",
            ]
            for r in load
        ]
        head = ["system", "blocked names", "ready (s)", "RSS (MiB)", "reload (s)"]
        out += table([*head, "sent / completed / lost"], body)
    correctness = res / "correctness.md"
    if correctness.exists():
        out += ["## Spot check (dig answers)", "", correctness.read_text()]
    print("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
