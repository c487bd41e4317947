#!/usr/bin/env bash
# Benchmark: sinkhole against dnsmasq, unbound and a naive dnslib server (see README.md).
#
#   sudo bench/run.sh                                        # every phase, about 67 minutes
#   sudo REPS=1 DUR=3 SIZES=100000 SKIP_LOAD=1 SOAK=60 bench/run.sh   # smoke run, about 8 min
#   sudo ONLY="tls metrics" bench/run.sh                     # some phases only
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
SUTS=${SUTS:-"sinkhole sinkhole_compiled dnsmasq unbound dnslib1k"}   # add "pdns" for PowerDNS Recursor
RELOAD_QPS=${RELOAD_QPS:-2000}      # fixed query rate while reloading
RELOAD_DUR=${RELOAD_DUR:-25}        # seconds of that run (<= 30); the reload is at t=3 s
ALONE_SUTS=${ALONE_SUTS:-$(echo " $SUTS " | sed 's/ dnslib1k / /' | xargs)}
ALONE_WORKLOADS=${ALONE_WORKLOADS:-"blocked hit"}
TLS_SUTS=${TLS_SUTS:-$SUTS}         # those without DoT/DoH are named in the report
TLS_WORKLOADS=${TLS_WORKLOADS:-"blocked_dot hit_dot blocked_doh"}
DOH_METHOD=${DOH_METHOD:-GET}
METRICS_WORKLOADS=${METRICS_WORKLOADS:-"blocked mix"}
METRICS_REPS=${METRICS_REPS:-$((REPS < 3 ? REPS : 5))}   # 3 % needs more runs than REPS
SCALE_WORKERS=${SCALE_WORKERS:-"1 2"}
SCALE_CLIENTS=${SCALE_CLIENTS:-2}   # dnsperf processes at once
SCALE_WORKLOADS=${SCALE_WORKLOADS:-"blocked mix"}
INSTR_REVS=${INSTR_REVS:-.}         # revisions counted by callgrind ("." = working tree)
INSTR_WORKLOADS=${INSTR_WORKLOADS:-"blocked hit miss"}
INSTR_DUR=${INSTR_DUR:-10}          # seconds of the counted run (<= 30)
SOAK=${SOAK:-600}                   # seconds of the soak (0: none)
SOAK_CHUNK=${SOAK_CHUNK:-10}        # seconds per dnsperf run in the soak (<= 30)
SOAK_SAMPLE=${SOAK_SAMPLE:-5}       # seconds between two memory samples
SOAK_RELOAD=${SOAK_RELOAD:-60}      # seconds between two reloads
RESULTS=${BENCH_RESULTS:-$HERE/results}
if [ "$DUR" -gt 30 ] || [ "$RELOAD_DUR" -gt 30 ] || [ "$SOAK_CHUNK" -gt 30 ] || [ "$INSTR_DUR" -gt 30 ]; then
  echo "DUR, RELOAD_DUR, SOAK_CHUNK and INSTR_DUR must be <= 30" >&2; exit 2
fi
[ "$SOAK" -le 3600 ] || { echo "SOAK must be <= 3600" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (sudo): it needs unshare and may apt-get install" >&2; exit 2; }

# ---- 0. tools, outside the namespace (needs the package registries) ----------------
if [ -z "${BENCH_IN_NS:-}" ]; then
  # shellcheck source=bench/install.sh
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
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
# shellcheck source=bench/suts.sh
. "$HERE/suts.sh"
# shellcheck source=bench/phases.sh
. "$HERE/phases.sh"
# shellcheck source=bench/soak.sh
. "$HERE/soak.sh"
trap cleanup_all EXIT
log "scratch: $SCRATCH (python: $PY)"

# On two or three cores the scaling runs share every core between server and clients;
# from four on the clients get the first half and the server the second.
if [ "$(nproc)" -ge 4 ]; then
  SCALE_CLIENT_CPUS=${SCALE_CLIENT_CPUS:-0-$(($(nproc) / 2 - 1))}
  SCALE_SERVER_CPUS=${SCALE_SERVER_CPUS:-$(($(nproc) / 2))-$(($(nproc) - 1))}
else
  SCALE_CLIENT_CPUS=${SCALE_CLIENT_CPUS:-0-$(($(nproc) - 1))}
  SCALE_SERVER_CPUS=${SCALE_SERVER_CPUS:-0-$(($(nproc) - 1))}
fi

# want PHASE : whether a phase runs. ONLY="phase ..." runs those alone; otherwise every
# phase runs unless its SKIP_ knob is set (SKIP_PERF: throughput, latency, settings).
want() {
  if [ -n "${ONLY:-}" ]; then [[ " $ONLY " == *" $1 "* ]]; return; fi
  case $1 in
    throughput) [ -z "${SKIP_PERF:-}" ] ;;
    latency) [ -z "${SKIP_PERF:-}${SKIP_LATENCY:-}" ] ;;
    settings) [ -z "${SKIP_PERF:-}${SKIP_SETTINGS:-}" ] ;;
    alone) [ -z "${SKIP_ALONE:-}" ] ;;
    tls) [ -z "${SKIP_TLS:-}" ] ;;
    metrics) [ -z "${SKIP_METRICS:-}" ] ;;
    scaling) [ -z "${SKIP_SCALING:-}" ] ;;
    instructions) [ -z "${SKIP_INSTRUCTIONS:-}" ] ;;
    scale) [ -z "${SKIP_LOAD:-}" ] ;;
    soak) [ "$SOAK" -gt 0 ] ;;
    *) return 1 ;;
  esac
}
PHASES=""
for p in throughput latency settings alone tls metrics scaling instructions scale soak; do
  if want "$p"; then PHASES="$PHASES $p"; fi
done
PHASES=${PHASES# }
[ -n "$PHASES" ] || { log "no phase to run (ONLY=\"${ONLY:-}\")"; exit 2; }
if want latency && ! want throughput; then log "latency needs the throughput phase: left out"; fi

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(nproc) cores, kernel $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "phases: $PHASES"
  echo "settings: REPS=$REPS DUR=$DUR BL_N=$BL_N SIZES=\"$SIZES\" WORKLOADS=\"$WORKLOADS\"" \
    "SUTS=\"$SUTS\" LAT_WORKLOADS=\"$LAT_WORKLOADS\" ALONE_SUTS=\"$ALONE_SUTS\"" \
    "ALONE_WORKLOADS=\"$ALONE_WORKLOADS\" TLS_WORKLOADS=\"$TLS_WORKLOADS\" DOH_METHOD=$DOH_METHOD" \
    "METRICS_WORKLOADS=\"$METRICS_WORKLOADS\" METRICS_REPS=$METRICS_REPS SCALE_WORKERS=\"$SCALE_WORKERS\"" \
    "SCALE_CLIENTS=$SCALE_CLIENTS SCALE_WORKLOADS=\"$SCALE_WORKLOADS\"" \
    "SCALE_SERVER_CPUS=$SCALE_SERVER_CPUS SCALE_CLIENT_CPUS=$SCALE_CLIENT_CPUS" \
    "INSTR_REVS=\"$INSTR_REVS\" INSTR_WORKLOADS=\"$INSTR_WORKLOADS\" INSTR_DUR=$INSTR_DUR SOAK=$SOAK" \
    "SOAK_QPS=${SOAK_QPS:-} SOAK_CHUNK=$SOAK_CHUNK SOAK_SAMPLE=$SOAK_SAMPLE SOAK_RELOAD=$SOAK_RELOAD" \
    "PERF_CLIENTS=${PERF_CLIENTS:-8} PERF_OUTSTANDING=${PERF_OUTSTANDING:-200} PERF_TIMEOUT=${PERF_TIMEOUT:-2}"
  if [ "$REPS" -lt 3 ] || [ "$DUR" -lt 10 ] || { want soak && [ "$SOAK" -lt 600 ]; }; then
    echo "**smoke-run settings (REPS < 3, DUR < 10 or SOAK < 600): the figures are a sanity check, not a measurement**"
  fi
  if [ "$(awk '{print ($1 > 0.5)}' /proc/loadavg)" = 1 ]; then
    echo "**the machine was not idle at start (load average above 0.5): expect noise**"
  fi
} >"$RES/header.txt"

# ---- 1. data ---------------------------------------------------------------------------
[ -f "$DATA/q-hit.txt" ] || "$PY" "$HERE/gen.py" static "$DATA"
sizes=""; if want scale; then sizes=$SIZES; fi
for n in 1000 $BL_N $sizes; do
  [ -f "$DATA/q-blocked-$n.txt" ] || { log "generating block list N=$n"; "$PY" "$HERE/gen.py" blocklist "$n" "$DATA"; }
done

# ---- 2. fake upstream (nsd) ---------------------------------------------------------------
upstream_start "$SCRATCH/upstream" "$UPSTREAM_PORT"
wait_answer "$UPSTREAM_PORT" x.bench.test 198.51.100.7 10 "$(now)" >/dev/null \
  || { log "nsd did not start, see $SCRATCH/upstream/server.log"; exit 1; }

# ---- 3. the phases (phases.sh, soak.sh) ------------------------------------------------------
if want throughput; then
  phase_upstream
  phase_throughput
  if want latency; then phase_latency; fi
  phase_throughput_end
fi
if want settings && [[ " $SUTS " == *" sinkhole "* ]]; then phase_settings; fi
if want alone; then phase_alone; fi
if want tls; then phase_tls; fi
if want metrics; then phase_metrics; fi
if want scaling; then phase_scaling; fi
if want instructions; then phase_instructions; fi
if want scale; then phase_scale; fi
if want soak; then phase_soak; fi
cleanup_all

# ---- 4. report -----------------------------------------------------------------------------
"$PY" "$HERE/summarize.py" "$RES" >"$RES/latest.md"
if [ -f "$RES/perf.tsv" ]; then
  "$PY" "$HERE/plot.py" "$RES/perf.tsv" "$RES/latest.png" || log "no chart: plot.py failed"
fi
mkdir -p "$RESULTS"
# everything summarize.py reads, so that `summarize.py bench/results` makes latest.md again
for f in latest.md latest.png header.txt upstream.tsv correctness.md perf.tsv latency.tsv \
         settings.tsv load.tsv suts.tsv alone.tsv tls.tsv transports.tsv metrics.tsv scaling.tsv \
         instructions.tsv \
         soak-info.tsv soak-samples.tsv soak-chunks.tsv soak-reloads.tsv soak-minutes.tsv; do
  if [ -f "$RES/$f" ]; then cp "$RES/$f" "$RESULTS/$f"; else rm -f "$RESULTS/$f"; fi
done
cat "$RES/latest.md"
log "report: $RESULTS/latest.md, chart: $RESULTS/latest.png; scratch (data, logs): $SCRATCH"
