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

    ours = [s for s in ("sinkhole", "sinkhole_compiled") if s in order]
    bases = [b for b in RATIO_BASES if b in order]
    if ours and bases:
        out += ["Ratio of median QPS, sinkhole / peer (above 1: sinkhole is faster)", ""]
        pairs = [(s, b) for s in ours for b in bases]
        body = []
        for w in workloads:
            cells = [fmt(ratio(med(qps(s, w)), med(qps(b, w))), 2) for s, b in pairs]
            body.append([w, *cells])
        out += table(["workload", *(f"{s} / {b}" for s, b in pairs)], body)

    out += [
        "## Details (medians over runs; lost = total over all runs)",
        "",
        "Latency is per response (dnsperf -v) in a closed loop with a fixed window of"
        " outstanding queries, so at saturation it is mostly queueing. CPU: 100 = one core."
        " Other CPU % is what the rest of the machine used during the run: on a quiet"
        " machine the kernel's share of the loopback traffic (and nsd for miss and mix);"
        " far more means another program took CPU from the run.",
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
                    other(rr),
                ]
            )
    head = ["workload", "system", "QPS", "avg ms", "p50 ms", "p99 ms", "lost / sent"]
    head += ["NOERROR %", "server CPU %", "dnsperf CPU %", "other CPU %"]
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
                    other(runs),
                ]
            )
    head = ["workload", "system", "rate (q/s)", "QPS", "avg ms", "p50 ms", "p99 ms"]
    head += ["worst p99 ms", "lost / sent", "server CPU %", "other CPU %"]
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
                    other(runs),
                ]
            )
    head = ["workload", "setting", "cores", "QPS", "p99 ms", "server CPU %", "dnsperf CPU %"]
    head += ["other CPU %"]
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


def other(runs: list[Row]) -> str:
    """Median CPU % the rest of the machine used during the runs (absent in old files)."""
    return fmt(med([num(r.get("other_cpu_pct")) for r in runs]))


def qps_cell(runs: list[Row]) -> str:
    q = [v for v in (num(r["qps"]) for r in runs) if not math.isnan(v)]
    return f"{fmt(med(q))} ({fmt(min(q))}-{fmt(max(q))})" if q else "-"


def total_of(runs: list[Row], key: str) -> int:
    return sum(int(v) for v in (num(r[key]) for r in runs) if not math.isnan(v))


def alone_section(alone: list[Row], perf: list[Row]) -> list[str]:
    """Each system started alone vs the interleaved runs with every system started."""
    body = []
    for w in dict.fromkeys(r["workload"] for r in alone):
        for s in dict.fromkeys(r["sut"] for r in alone):
            mine = [r for r in alone if r["sut"] == s and r["workload"] == w]
            same = [r for r in mine if r["variant"] == "same"]
            plain = [r for r in mine if r["variant"] == "plain"]
            if not same and not plain:
                continue
            shared = [r for r in perf if r["sut"] == s and r["workload"] == w]
            body.append(
                [
                    w,
                    s,
                    qps_cell(shared),
                    qps_cell(same),
                    fmt(med([num(r["cpu_pct"]) for r in same])),
                    fmt(med([num(r["client_cpu_pct"]) for r in same])),
                    other(same),
                    qps_cell(plain),
                    fmt(med([num(r["cpu_pct"]) for r in plain])),
                    fmt(med([num(r["client_cpu_pct"]) for r in plain])),
                    other(plain),
                ]
            )
    head = ["workload", "system", "QPS, all started (above)", "QPS alone", "server CPU %"]
    head += ["dnsperf CPU %", "other CPU %", "QPS alone, no -v", "server CPU %"]
    head += ["dnsperf CPU %", "other CPU %"]
    return [
        "## Each system alone (QPS at saturation, median, min-max)",
        "",
        "The throughput runs above start every system at once and pause (SIGSTOP) all but"
        " the one measured. Here each system is the only server started, with the same"
        " dnsperf flags (-c, -q, -t, -v, pinned to the client core), then without -v (no"
        " per-response line for dnsperf to write). When dnsperf CPU % is near 100, dnsperf"
        " is the limit, not the server.",
        "",
        *table(head, body),
    ]


def tls_section(tls: list[Row], transports: list[Row]) -> list[str]:
    """DNS over TLS and over HTTPS, for the systems that serve them."""
    workloads = list(dict.fromkeys(r["workload"] for r in tls))
    order = [t["sut"] for t in transports if "yes" in (t["dot"], t["doh"])]
    serves = {t["sut"]: t for t in transports}

    def cell(s: str, w: str) -> str:
        runs = [r for r in tls if r["sut"] == s and r["workload"] == w]
        if runs:
            return qps_cell(runs)
        kind = "doh" if w.endswith("_doh") else "dot"
        if serves.get(s, {}).get(kind) == "no":
            return "n/a (no DoH)" if kind == "doh" else "n/a (no DoT)"
        return "-"

    out = [
        "## DNS over TLS and DNS over HTTPS (QPS at saturation, median, min-max)",
        "",
        "Same load as above (dnsperf -c 8: 8 connections, 200 queries outstanding in all),"
        " over DoT (`-m dot`) and DoH (`-m doh`: HTTP/2, GET unless the settings line"
        " says another DOH_METHOD), with a self-signed certificate; `hit_dot` is cache"
        " hits over DoT.",
        "",
    ]
    out += table(["system", *workloads], [[s, *(cell(s, w) for w in workloads)] for s in order])
    if "sinkhole" in order and len(order) > 1:
        peers = [s for s in order if s != "sinkhole"]
        body = []
        for w in workloads:
            ours = [num(r["qps"]) for r in tls if r["sut"] == "sinkhole" and r["workload"] == w]
            mine = med(ours)
            cells = []
            for b in peers:
                theirs = [num(r["qps"]) for r in tls if r["sut"] == b and r["workload"] == w]
                cells.append(fmt(ratio(mine, med(theirs)), 2) if theirs else "-")
            body.append([w, *cells])
        out += ["Ratio of median QPS, sinkhole / peer", ""]
        out += table(["workload", *(f"sinkhole / {b}" for b in peers)], body)
    body = []
    for w in workloads:
        for s in order:
            runs = [r for r in tls if r["sut"] == s and r["workload"] == w]
            if runs:
                body.append(
                    [
                        w,
                        s,
                        fmt(med([num(r["qps"]) for r in runs])),
                        fmt(med([num(r["p50_ms"]) for r in runs]), 2),
                        fmt(med([num(r["p99_ms"]) for r in runs]), 2),
                        f"{total_of(runs, 'lost'):,} / {total_of(runs, 'sent'):,}",
                        fmt(med([num(r["cpu_pct"]) for r in runs])),
                        fmt(med([num(r["client_cpu_pct"]) for r in runs])),
                        other(runs),
                    ]
                )
    head = ["workload", "system", "QPS", "p50 ms", "p99 ms", "lost / sent", "server CPU %"]
    out += table([*head, "dnsperf CPU %", "other CPU %"], body)
    for t in transports:
        if t["note"]:
            out.append(f"- {t['sut']} ({t['version']}): {t['note']}.")
    return [*out, ""]


def metrics_section(rows_: list[Row]) -> list[str]:
    """sinkhole with /metrics scraped once a second against sinkhole without."""
    body = []
    for w in dict.fromkeys(r["workload"] for r in rows_):
        off = [r for r in rows_ if r["workload"] == w and r["sut"] == "sinkhole"]
        on = [r for r in rows_ if r["workload"] == w and r["sut"] == "sinkhole_metrics"]
        r_on_off = ratio(med([num(r["qps"]) for r in on]), med([num(r["qps"]) for r in off]))
        verdict = "-" if math.isnan(r_on_off) else ("yes" if r_on_off >= 0.97 else "**no**")
        body.append(
            [
                w,
                qps_cell(off),
                qps_cell(on),
                fmt(r_on_off, 3),
                verdict,
                fmt(med([num(r["p99_ms"]) for r in off]), 2),
                fmt(med([num(r["p99_ms"]) for r in on]), 2),
                fmt(med([num(r["scrapes"]) for r in on])),
                f"{other(off)} / {other(on)}",
            ]
        )
    head = ["workload", "QPS metrics off", "QPS metrics on", "on / off", "within 3 %"]
    head += ["p99 ms off", "p99 ms on", "scrapes per run", "other CPU % off / on"]
    return [
        "## Metrics on vs off (sinkhole, QPS at saturation, median, min-max)",
        "",
        "Two sinkholes, one with `metrics:` whose /metrics is fetched once a second"
        " during each of its runs (as a Prometheus with a 1 s scrape interval would),"
        " measured interleaved like the runs above. The ratio compares medians; when the"
        " min-max ranges are wider than 3 %, the verdict is within noise.",
        "",
        *table(head, body),
    ]


def scaling_section(rows_: list[Row]) -> list[str]:
    body = []
    for w in dict.fromkeys(r["workload"] for r in rows_):
        for n in dict.fromkeys(r["workers"] for r in rows_):
            runs = [r for r in rows_ if r["workload"] == w and r["workers"] == n]
            if not runs:
                continue
            body.append(
                [
                    w,
                    n,
                    runs[0]["clients"],
                    runs[0]["server_cpus"],
                    runs[0]["client_cpus"],
                    qps_cell(runs),
                    fmt(med([num(r["cpu_us_per_query"]) for r in runs]), 2),
                    fmt(med([num(r["server_cpu_pct"]) for r in runs])),
                    fmt(med([num(r["client_cpu_pct"]) for r in runs])),
                    other(runs),
                    fmt(max(num(r["p99_ms"]) for r in runs), 2),
                    f"{total_of(runs, 'lost'):,} / {total_of(runs, 'sent'):,}",
                ]
            )
    head = ["workload", "workers", "dnsperf processes", "server cores", "client cores"]
    head += ["QPS (all clients)", "server CPU us / query", "server CPU %", "dnsperf CPU %"]
    head += ["other CPU %"]
    head += ["worst p99 ms", "lost / sent"]
    return [
        "## Scaling: workers and several dnsperf processes (median, min-max)",
        "",
        "Server CPU per query = CPU seconds of all the server's processes (supervisor and"
        " workers, /proc/PID/stat) during the runs / queries answered: the cost of one"
        " answer, which does not depend on how many cores there are. QPS is only a"
        " scaling figure when the server and the clients have cores of their own"
        " (see bench/README.md).",
        "",
        *table(head, body),
    ]


def revision(row: Row) -> str:
    """A revision as the instructions phase names it: the working tree is "."."""
    rev, commit = row["rev"], row["commit"]
    if rev == ".":
        return f"working tree ({commit})"
    return rev if commit.startswith(rev) else f"{rev} ({commit})"


def instructions_section(rows_: list[Row]) -> list[str]:
    revs = list(dict.fromkeys(revision(r) for r in rows_))
    per = {(revision(r), r["workload"]): r for r in rows_}
    body = []
    for w in dict.fromkeys(r["workload"] for r in rows_):
        cells = [w]
        for rev in revs:
            r = per.get((rev, w))
            cells.append(f"{fmt(num(r['per_answer']))} ({r['completed']})" if r else "-")
        if len(revs) > 1:
            first, last = per.get((revs[0], w)), per.get((revs[-1], w))
            change = "-"
            if first and last and num(first["per_answer"]):
                change = f"{100 * (num(last['per_answer']) / num(first['per_answer']) - 1):+.1f} %"
            cells.append(change)
        body.append(cells)
    head = ["workload", *[f"{rev}: instructions / answer (answers)" for rev in revs]]
    if len(revs) > 1:
        head.append(f"{revs[-1]} vs {revs[0]}")
    return [
        "## Instructions per answer (callgrind, sinkhole)",
        "",
        "User-space instructions the server executed during one saturating dnsperf run"
        " (start-up excluded) / answers received: a figure that machine load does not move"
        " (runs repeat within about 1-2 %), for comparing revisions of the hot path."
        " System calls are not in it (see bench/README.md).",
        "",
        *table(head, body),
    ]


def soak_section(res: Path) -> list[str]:
    info = {r["key"]: r["value"] for r in rows(res / "soak-info.tsv")}
    samples = rows(res / "soak-samples.tsv")
    minutes = rows(res / "soak-minutes.tsv")
    reloads = rows(res / "soak-reloads.tsv")
    chunks = rows(res / "soak-chunks.tsv")
    sat = num(info.get("saturation_qps"))
    why = "given by SOAK_QPS" if math.isnan(sat) else f"half of a saturation of {fmt(sat)}"
    out = [
        "## Soak: the mix workload at half of saturation, with reloads",
        "",
        f"{info.get('version', 'sinkhole')}: {fmt(num(info.get('duration_s')))} s of the mix"
        f" workload at a fixed {fmt(num(info.get('rate_qps')))} queries per second ({why}),"
        " dnsperf in back-to-back runs of"
        f" {info.get('chunk_s', '?')} s (-c {info.get('clients', '?')},"
        f" -q {info.get('outstanding', '?')}, -t {info.get('timeout_s', '?')});"
        f" memory sampled every {info.get('sample_s', '?')} s; a reload every"
        f" {info.get('reload_every_s', '?')} s, alternately with a name added to the block"
        f" list ({fmt(num(info.get('blocklist')))} names) and a bare SIGHUP.",
        "",
    ]
    if samples:
        first, last = samples[0], samples[-1]
        # (a capacity of 0: the workers had not reported their counters yet)
        full = [
            s
            for s in samples
            if num(s["cache_capacity"]) > 0 and num(s["cache_entries"]) >= num(s["cache_capacity"])
        ]
        body = [
            [
                "start (warmed, no load)",
                first["t_s"],
                first["rss_mib"],
                first["pss_mib"],
                first["cache_entries"],
            ]
        ]
        if full:
            f = full[0]
            body.append(["cache full", f["t_s"], f["rss_mib"], f["pss_mib"], f["cache_entries"]])
        else:
            most = max((num(s["cache_entries"]) for s in samples), default=NAN)
            body.append(
                [
                    f"cache never full (at most {fmt(most)} of {last['cache_capacity']})",
                    "-",
                    "-",
                    "-",
                    "-",
                ]
            )
        peak = max(samples, key=lambda s: num(s["rss_mib"]))
        body.append(
            ["highest RSS", peak["t_s"], peak["rss_mib"], peak["pss_mib"], peak["cache_entries"]]
        )
        body.append(["end", last["t_s"], last["rss_mib"], last["pss_mib"], last["cache_entries"]])
        out += table(["when", "t (s)", "RSS MiB", "PSS MiB", "cache entries"], body)
        out += [f"Server processes: {last['processes']}; CPU used: {last['cpu_s']} s.", ""]
    if minutes:
        body = [
            [
                m["minute"],
                fmt(num(m["sent"])),
                fmt(num(m["lost"])),
                fmt(num(m["p50_ms"]), 2),
                fmt(num(m["p99_ms"]), 2),
                fmt(num(m["p999_ms"]), 2),
                fmt(num(m["max_ms"]), 1),
                m["rss_mib"],
                m["cache_entries"],
                m["reloads"],
            ]
            for m in minutes
        ]
        head = ["minute", "sent", "lost", "p50 ms", "p99 ms", "p99.9 ms", "max ms"]
        out += table([*head, "RSS MiB (end)", "cache entries", "reloads (kind@t)"], body)
    sent = total_of(chunks, "sent")
    lost = total_of(chunks, "lost")
    counted = [r for r in reloads if r["counted_s"] != "timeout"]
    end = samples[-1] if samples else {}
    share = fmt(100 * lost / sent if sent else NAN, 4)
    out += [
        f"Total: {sent:,} queries sent, {lost:,} lost ({share} %; each dnsperf run also"
        " counts the few queries still in flight when it stops)."
        f" Reloads: {len(reloads)} triggered, {len(counted)} counted by /metrics"
        f" (sinkhole_reloads_total at the end: {end.get('reloads', '-')},"
        f" failures: {end.get('reload_failures', '-')}).",
        "",
    ]
    if reloads:
        body = [[r["reload"], r["t_s"], r["kind"], r["counted_s"], r["blocked_s"]] for r in reloads]
        head = ["reload", "t (s)", "kind", "s until counted", "s until the new name is blocked"]
        out += table(head, body)
    return out


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
    alone = rows(res / "alone.tsv")
    if alone:
        out += alone_section(alone, perf)
    tls = rows(res / "tls.tsv")
    transports = rows(res / "transports.tsv")
    if tls or transports:
        out += tls_section(tls, transports)
    metrics = rows(res / "metrics.tsv")
    if metrics:
        out += metrics_section(metrics)
    scaling = rows(res / "scaling.tsv")
    if scaling:
        out += scaling_section(scaling)
    instructions = rows(res / "instructions.tsv")
    if instructions:
        out += instructions_section(instructions)
    if (res / "soak-info.tsv").exists():
        out += soak_section(res)
    correctness = res / "correctness.md"
    if correctness.exists():
        out += ["## Spot check (dig answers)", "", correctness.read_text()]
    print("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
