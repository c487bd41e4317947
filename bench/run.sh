#!/usr/bin/env bash
# Benchmark: sinkhole against dnsmasq, unbound and a naive dnslib server (see README.md).
#
#   sudo bench/run.sh                                        # full run, about 20 minutes
#   sudo REPS=1 DUR=3 SIZES=100000 SKIP_LOAD=1 bench/run.sh  # smoke run, about 2 minutes
#
# Everything runs inside a private network namespace that only has loopback, and a
# private PID namespace: no packet can leave the machine and no server outlives the run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

REPS=${REPS:-3}                     # interleaved repetitions (A B C A B C ...)
DUR=${DUR:-10}                      # seconds per dnsperf run (<= 30)
BL_N=${BL_N:-100000}                # block-list size for the throughput phase
SIZES=${SIZES:-"100000 1000000"}    # block-list sizes for the scale phase
WORKLOADS=${WORKLOADS:-"blocked hit miss mix blocked_tcp"}
LAT_WORKLOADS=${LAT_WORKLOADS:-"blocked hit mix"}   # latency at half of saturation
SUTS=${SUTS:-"sinkhole dnsmasq unbound dnslib1k"}   # add "pdns" for PowerDNS Recursor
RELOAD_QPS=${RELOAD_QPS:-2000}      # fixed query rate while reloading
RELOAD_DUR=${RELOAD_DUR:-25}        # seconds of that run (<= 30); the reload is at t=3 s
RESULTS=${BENCH_RESULTS:-$HERE/results}
[ "$DUR" -le 30 ] && [ "$RELOAD_DUR" -le 30 ] || { echo "DUR and RELOAD_DUR must be <= 30" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (sudo): it needs unshare and may apt-get install" >&2; exit 2; }

# ---- 0. tools, outside the namespace (needs the package registries) ----------------
if [ -z "${BENCH_IN_NS:-}" ]; then
  . "$HERE/install.sh"
  install_debian_tools
  install_python_deps   # sets PY
  exec env BENCH_IN_NS=1 PY="$PY" unshare --net --pid --fork --mount-proc bash "$0" "$@"
fi
ip link set lo up

SCRATCH=${BENCH_SCRATCH:-$(mktemp -d /tmp/sinkhole-bench.XXXXXX)}
DATA="$SCRATCH/data"
RES="$SCRATCH/results"
rm -rf "$RES"; mkdir -p "$RES" "$DATA"
. "$HERE/lib.sh"
. "$HERE/suts.sh"
trap cleanup_all EXIT
log "scratch: $SCRATCH (python: $PY)"

sut_opt() {   # sut_opt NAME ACTION DEFAULT : an optional answer of a system's function
  local v; v=$("sut_$1" "$2" x 0 0 2>/dev/null || true); echo "${v:-$3}"
}
sut_bl() { sut_opt "$1" blocklist "$BL_N"; }
sut_sizes() { local z; z=$(sut_opt "$1" sizes "$SIZES"); [ "$z" = none ] || echo "$z"; }

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(nproc) cores, kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "settings: REPS=$REPS DUR=$DUR BL_N=$BL_N SIZES=\"$SIZES\" WORKLOADS=\"$WORKLOADS\"" \
    "SUTS=\"$SUTS\" LAT_WORKLOADS=\"$LAT_WORKLOADS\" SKIP_LOAD=${SKIP_LOAD:-} SKIP_PERF=${SKIP_PERF:-}" \
    "SKIP_LATENCY=${SKIP_LATENCY:-} SKIP_SETTINGS=${SKIP_SETTINGS:-}"
  if [ "$REPS" -lt 3 ] || [ "$DUR" -lt 10 ]; then
    echo "**smoke-run settings (REPS < 3 or DUR < 10): the figures are a sanity check, not a measurement**"
  fi
  if [ "$(awk '{print ($1 > 0.5)}' /proc/loadavg)" = 1 ]; then
    echo "**the machine was not idle at start (load average above 0.5): expect noise**"
  fi
} >"$RES/header.txt"

# ---- 1. data ---------------------------------------------------------------------------
[ -f "$DATA/q-hit.txt" ] || "$PY" "$HERE/gen.py" static "$DATA"
for n in 1000 $BL_N $SIZES; do
  [ -f "$DATA/q-blocked-$n.txt" ] || { log "generating block list N=$n"; "$PY" "$HERE/gen.py" blocklist "$n" "$DATA"; }
done

# ---- 2. fake upstream (nsd) and its own ceiling ---------------------------------------------
upstream_start "$SCRATCH/upstream" "$UPSTREAM_PORT"
wait_answer "$UPSTREAM_PORT" x.bench.test 198.51.100.7 10 "$(now)" >/dev/null \
  || { log "nsd did not start, see $SCRATCH/upstream/server.log"; exit 1; }
if [ -z "${SKIP_PERF:-}" ]; then
  "$PY" "$HERE/gen.py" miss up $((DUR * 150000)) "$SCRATCH/q-up.txt"
  r=$(CLIENT_CPU=$SERVER_CPU PERF_PID=$UPSTREAM_PID perf "$UPSTREAM_PORT" "$SCRATCH/q-up.txt" "$DUR" -n 1)
  echo "$r" | awk '{printf "%.0f\t%s\n", $4, $9}' >"$RES/upstream.tsv"
  log "upstream alone (unique names): $r"
fi

# ---- 3. throughput: every system on its own port, runs interleaved --------------------------
if [ -z "${SKIP_PERF:-}" ]; then
  declare -A PORT PID STARTUP RSS0 VER
  port=5301
  echo -e "sut\tversion\tblocklist\tstartup_s\trss_start_mib\trss_end_mib" >"$RES/suts.tsv"
  for s in $SUTS; do
    d="$SCRATCH/sut-$s"; rm -rf "$d"; mkdir -p "$d"
    PORT[$s]=$port; port=$((port + 1))
    n=$(sut_bl "$s")
    VER[$s]=$("sut_$s" version "$d" "${PORT[$s]}" "$n" 2>&1 | head -1)
    "sut_$s" prepare "$d" "${PORT[$s]}" "$n"
    t0=$(now)
    "sut_$s" start "$d" "${PORT[$s]}" "$n"
    PID[$s]=$SUT_PID
    STARTUP[$s]=$(wait_answer "${PORT[$s]}" "$(head -1 "$DATA/names-$n.txt")" "$WARN_A" 300 "$t0" || true)
    RSS0[$s]=$(rss_mib "${PID[$s]}")
    log "$s: port ${PORT[$s]} pid ${PID[$s]} ready after ${STARTUP[$s]} s, RSS ${RSS0[$s]} MiB (${VER[$s]})"
    [ "${STARTUP[$s]}" != timeout ] || log "$s did not answer; its log: $d/server.log"
  done

  # correctness spot check
  {
    echo "| system | blocked A | blocked AAAA | allowed A | allowed A (TCP) | blocked A (TCP) |"
    echo "|---|---|---|---|---|---|"
    for s in $SUTS; do
      b=$(sed -n 5p "$DATA/names-$(sut_bl "$s").txt"); p=${PORT[$s]}
      echo "| $s | $(Q_TIME=2 q "$p" "$b" A) | $(Q_TIME=2 q "$p" "$b" AAAA) | $(Q_TIME=2 q "$p" ok.bench.test A)" \
        "| $(Q_TIME=2 q "$p" ok2.bench.test A tcp) | $(Q_TIME=2 q "$p" "$b" A tcp) |"
    done
  } >"$RES/correctness.md"
  cat "$RES/correctness.md" >&2

  echo -e "sut\tworkload\trep\tsent\tcompleted\tlost\tqps\tavg_ms\tp50_ms\tp99_ms\tnoerror_pct\tcpu_pct\tclient_cpu_pct" >"$RES/perf.tsv"
  for s in $SUTS; do   # warm the cache with the 1,000 "hit" names (bounded: -n 1, -l 30)
    taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "${PORT[$s]}" -d "$DATA/q-hit-uniq.txt" \
      -n 1 -l 30 -q 10 >/dev/null 2>&1 || true
  done
  for rep in $(seq "$REPS"); do
    for w in $WORKLOADS; do
      for s in $SUTS; do
        case " $(sut_opt "$s" workloads "$WORKLOADS") " in *" $w "*) ;; *) continue ;; esac
        n=$(sut_bl "$s"); extra=()
        case $w in
          blocked) f="$DATA/q-blocked-$n.txt" ;;
          blocked_tcp) f="$DATA/q-blocked-$n.txt"; extra=(-m tcp) ;;
          hit) f="$DATA/q-hit.txt" ;;
          miss) f="$SCRATCH/q-miss.txt"; extra=(-n 1)
                "$PY" "$HERE/gen.py" miss "r$rep$s" $((DUR * 150000)) "$f" ;;
          mix) f="$SCRATCH/q-mix.txt"; extra=(-n 1)
               "$PY" "$HERE/gen.py" mix "r$rep$s" $((DUR * 150000)) "$n" "$DATA" "$f" ;;
          *) log "unknown workload $w"; exit 2 ;;
        esac
        # Only the system being measured may run on the server core: a slow one would
        # otherwise go on working through its backlog while the next one is measured.
        for o in $SUTS; do [ "$o" = "$s" ] || kill -STOP "${PID[$o]}" 2>/dev/null || true; done
        kill -CONT "${PID[$s]}" 2>/dev/null || true
        sleep 1   # let it drain what is left of its own previous run
        r=$(PERF_OUTSTANDING=$(sut_opt "$s" outstanding "${PERF_OUTSTANDING:-200}") \
          PERF_PID=${PID[$s]} perf "${PORT[$s]}" "$f" "$DUR" "${extra[@]}")
        printf '%s\t%s\t%s\t%s\n' "$s" "$w" "$rep" "$(echo "$r" | tr ' ' '\t')" >>"$RES/perf.tsv"
        log "rep $rep $w $s: $r"
      done
    done
  done
  # Latency at half of saturation: a fixed rate (dnsperf -Q) of half the system's median
  # saturation QPS for that workload, interleaved like the runs above.
  if [ -z "${SKIP_LATENCY:-}" ]; then
    echo -e "sut\tworkload\trep\ttarget_qps\tsent\tcompleted\tlost\tqps\tavg_ms\tp50_ms\tp99_ms\tnoerror_pct\tcpu_pct\tclient_cpu_pct" >"$RES/latency.tsv"
    for rep in $(seq "$REPS"); do
      for w in $LAT_WORKLOADS; do
        for s in $SUTS; do
          case " $(sut_opt "$s" workloads "$WORKLOADS") " in *" $w "*) ;; *) continue ;; esac
          sat=$(awk -F'\t' -v s="$s" -v w="$w" '$1 == s && $2 == w {print $7}' "$RES/perf.tsv" \
            | sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}')
          [ -n "$sat" ] || continue
          rate=$(awk -v q="$sat" 'BEGIN {r = int(q / 2); print (r < 1 ? 1 : r)}')
          n=$(sut_bl "$s"); extra=(-Q "$rate")
          case $w in
            blocked) f="$DATA/q-blocked-$n.txt" ;;
            hit) f="$DATA/q-hit.txt" ;;
            mix) f="$SCRATCH/q-mix.txt"; extra+=(-n 1)
                 "$PY" "$HERE/gen.py" mix "l$rep$s" $((DUR * 150000)) "$n" "$DATA" "$f" ;;
            *) continue ;;
          esac
          for o in $SUTS; do [ "$o" = "$s" ] || kill -STOP "${PID[$o]}" 2>/dev/null || true; done
          kill -CONT "${PID[$s]}" 2>/dev/null || true
          sleep 1
          r=$(PERF_OUTSTANDING=$(sut_opt "$s" outstanding "${PERF_OUTSTANDING:-200}") \
            PERF_PID=${PID[$s]} perf "${PORT[$s]}" "$f" "$DUR" "${extra[@]}")
          printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$w" "$rep" "$rate" "$(echo "$r" | tr ' ' '\t')" >>"$RES/latency.tsv"
          log "rep $rep latency $w $s at $rate q/s: $r"
        done
      done
    done
  fi
  for s in $SUTS; do kill -CONT "${PID[$s]}" 2>/dev/null || true; done
  for s in $SUTS; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "${VER[$s]}" "$(sut_bl "$s")" "${STARTUP[$s]}" \
      "${RSS0[$s]}" "$(rss_mib "${PID[$s]}")" >>"$RES/suts.tsv"
    stop_pid "${PID[$s]}"
  done
fi

# ---- 3b. sinkhole's own settings: workers and the query log. One worker pinned to the
# server core as above; one worker per core on every core, where dnsperf (and nsd) keep
# their core and so share it with a worker; and the query log on (the default is
# "blocked"), which the runs above turn off like the peers' logs.
if [ -z "${SKIP_PERF:-}" ] && [ -z "${SKIP_SETTINGS:-}" ] && [[ " $SUTS " == *" sinkhole "* ]]; then
  echo -e "workload\tsetting\tcpus\trep\tsent\tcompleted\tlost\tqps\tavg_ms\tp50_ms\tp99_ms\tnoerror_pct\tcpu_pct\tclient_cpu_pct" >"$RES/settings.tsv"
  all_cpus="0-$(($(nproc) - 1))"
  for rep in $(seq "$REPS"); do
    for w in blocked miss; do
      for setting in "workers: 1" "workers: $(nproc)" "query_log: blocked" "query_log: all"; do
        cpus=$SERVER_CPU; [ "$setting" != "workers: $(nproc)" ] || cpus=$all_cpus
        d="$SCRATCH/setting"; rm -rf "$d"; mkdir -p "$d"
        sut_sinkhole prepare "$d" 5391 "$BL_N"
        case $setting in
          workers:*) echo "$setting" >>"$d/config.yaml" ;;
          query_log:*) sed -i "s/^query_log: .*/$setting/" "$d/config.yaml"
                       echo "workers: 1" >>"$d/config.yaml" ;;
        esac
        SERVER_CPU=$cpus sut_sinkhole start "$d" 5391 "$BL_N"
        wait_answer 5391 "$(head -1 "$DATA/names-$BL_N.txt")" "$WARN_A" 300 "$(now)" >/dev/null \
          || log "sinkhole with $setting did not answer; its log: $d/server.log"
        extra=()
        case $w in
          blocked) f="$DATA/q-blocked-$BL_N.txt" ;;
          miss) f="$SCRATCH/q-miss.txt"; extra=(-n 1)
                "$PY" "$HERE/gen.py" miss "w$rep${setting//[^a-z0-9]/}" $((DUR * 150000)) "$f" ;;
        esac
        r=$(PERF_PID=$SUT_PID perf 5391 "$f" "$DUR" "${extra[@]}")
        printf '%s\t%s\t%s\t%s\t%s\n' "$w" "$setting" "$cpus" "$rep" "$(echo "$r" | tr ' ' '\t')" >>"$RES/settings.tsv"
        log "rep $rep $w, sinkhole with $setting on cpus $cpus: $r"
        stop_pid "$SUT_PID"
      done
    done
  done
fi

# ---- 4. scale: load time, memory, reload under a fixed-rate load (one system at a time) -----
if [ -z "${SKIP_LOAD:-}" ]; then
  echo -e "sut\tN\tstartup_s\trss_mib\treload_s\treload_sent\treload_completed\treload_lost" >"$RES/load.tsv"
  CANARY=canary-reload.example
  for s in $SUTS; do
    for n in $(sut_sizes "$s"); do
      [ -f "$DATA/names-$n.txt" ] || "$PY" "$HERE/gen.py" blocklist "$n" "$DATA"
      d="$SCRATCH/load-$s-$n"; rm -rf "$d"; mkdir -p "$d"
      "sut_$s" prepare "$d" 5390 "$n"
      t0=$(now)
      "sut_$s" start "$d" 5390 "$n"
      st=$(wait_answer 5390 "$(head -1 "$DATA/names-$n.txt")" "$WARN_A" 600 "$t0" || true)
      rss=$(rss_mib "$SUT_PID")
      rl="n/a"; rs="-"; rc="-"; rlost="-"
      if [ "$st" != timeout ]; then
        PERF_TIMEOUT=1 PERF_PID=$SUT_PID perf 5390 "$DATA/q-blocked-$n.txt" "$RELOAD_DUR" \
          -Q "$RELOAD_QPS" >"$d/reload.perf" &
        pp=$!
        sleep 3
        t0=$(now)
        if "sut_$s" reload "$d" 5390 "$n" 2>"$d/reload.err"; then
          rl=$(wait_answer 5390 "$CANARY" "$WARN_A" 120 "$t0" || true)
        else
          rl="n/a (no reload)"
        fi
        wait "$pp" || true
        read -r rs rc rlost _ <"$d/reload.perf" || true
        # a reload still running when the load stopped was not fully measured
        case $rl in n/a*|timeout) ;; *)
          [ "$(echo "3 + $rl > $RELOAD_DUR" | bc)" = 0 ] || rl="$rl (outlasted the load)" ;;
        esac
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$n" "$st" "$rss" "$rl" "$rs" "$rc" "$rlost" >>"$RES/load.tsv"
      log "scale $s N=$n: ready ${st} s, RSS ${rss} MiB, reload ${rl} s (sent $rs completed $rc lost $rlost)"
      stop_pid "$SUT_PID"
    done
  done
fi
cleanup_all

# ---- 5. report -----------------------------------------------------------------------------
"$PY" "$HERE/summarize.py" "$RES" >"$RES/latest.md"
if [ -f "$RES/perf.tsv" ]; then
  "$PY" "$HERE/plot.py" "$RES/perf.tsv" "$RES/latest.png" || log "no chart: plot.py failed"
fi
mkdir -p "$RESULTS"
for f in latest.md latest.png perf.tsv latency.tsv settings.tsv load.tsv suts.tsv; do
  if [ -f "$RES/$f" ]; then cp "$RES/$f" "$RESULTS/$f"; else rm -f "$RESULTS/$f"; fi
done
cat "$RES/latest.md"
log "report: $RESULTS/latest.md, chart: $RESULTS/latest.png; scratch (data, logs): $SCRATCH"
