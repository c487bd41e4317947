# shellcheck shell=bash
# Helpers for run.sh (sourced). Expects $SCRATCH, $DATA, $HERE and $PY.

SERVER_CPU=${SERVER_CPU:-1}      # core the system under test is pinned to
CLIENT_CPU=${CLIENT_CPU:-0}      # core dnsperf and the fake upstream run on
UPSTREAM_PORT=${UPSTREAM_PORT:-5300}
# shellcheck disable=SC2034  # the answer to a blocked name, read by suts.sh and phases.sh
WARN_A=192.0.2.80 WARN_AAAA=2001:db8::80
ALL_PIDS=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }

# bg_start DIR CMD... : start a server in the background, pinned to $SERVER_CPU,
# output to DIR/server.log, stdin from $BG_STDIN (default /dev/null). Sets SUT_PID.
# CMD must stay in the foreground: RSS and CPU are read from /proc/$SUT_PID.
bg_start() {
  local dir=$1; shift
  taskset -c "$SERVER_CPU" "$@" <"${BG_STDIN:-/dev/null}" >"$dir/server.log" 2>&1 &
  SUT_PID=$!
  ALL_PIDS="$ALL_PIDS $SUT_PID"
}

# stop_pid PID : TERM, wait up to 5 s, then KILL. Only PIDs this script started.
stop_pid() {
  local pid=$1 _
  [ -n "$pid" ] || return 0
  kill -CONT "$pid" 2>/dev/null || true   # a stopped process only acts on TERM once resumed
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup_all() {
  local p
  for p in $ALL_PIDS; do stop_pid "$p"; done
  ALL_PIDS=""
}

# q PORT NAME [TYPE] [tcp] : one query to 127.0.0.1:PORT, prints the first answer
q() {
  local extra=""
  [ "${4:-}" = tcp ] && extra="+tcp"
  dig +short +tries=1 +time="${Q_TIME:-1}" $extra -p "$1" @127.0.0.1 "$2" "${3:-A}" 2>/dev/null \
    | grep -v '^;' | head -1
}

# wait_answer PORT NAME EXPECT TIMEOUT_S T0 : poll until NAME answers EXPECT;
# prints the seconds since T0, or "timeout" (and returns 1).
wait_answer() {
  local port=$1 name=$2 expect=$3 tmo=$4 t0=$5 end
  end=$(echo "$(now) + $tmo" | bc)
  while :; do
    if [ "$(q "$port" "$name")" = "$expect" ]; then
      echo "$(now) - $t0" | bc | awk '{printf "%.2f", $1}'
      return 0
    fi
    if [ "$(echo "$(now) > $end" | bc)" = 1 ]; then echo timeout; return 1; fi
    sleep 0.05
  done
}

rss_mib() { awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# cpu_ticks PID : CPU clock ticks used by PID (all threads), its reaped children and its
# live descendants (nsd serves from a child, dnsmasq forks for TCP)
cpu_ticks() {
  [ -n "$1" ] || return 0
  local t c
  t=$(awk '{print $14+$15+$16+$17}' "/proc/$1/stat" 2>/dev/null) || return 0
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    c=$(cpu_ticks "$c")   # empty when the child is gone by now
    t=$((t + ${c:-0}))
  done
  echo "$t"
}

# tree_pids PID : PID and every live descendant (workers, nsd's server child)
tree_pids() {
  local c
  [ -d "/proc/$1" ] || return 0
  echo "$1"
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree_pids "$c"; done
}

# mem_mib PID : "RSS PSS PROCESSES" summed over PID and its descendants (MiB). PSS
# counts a page shared by N processes as 1/N, so the workers' shared policy image is
# counted once; RSS counts it in every process.
mem_mib() {
  local p rss=0 pss=0 n=0 r s
  for p in $(tree_pids "$1"); do
    r=$(awk '/^VmRSS/{print $2}' "/proc/$p/status" 2>/dev/null) || continue
    s=$(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || s=0
    rss=$((rss + ${r:-0})); pss=$((pss + ${s:-0})); n=$((n + 1))
  done
  awk -v r="$rss" -v p="$pss" -v n="$n" 'BEGIN {printf "%.1f %.1f %d\n", r / 1024, p / 1024, n}'
}

# metric PORT NAME : the value of an unlabelled sample on 127.0.0.1:PORT/metrics
# (empty when the endpoint does not answer within 2 s)
metric() {
  { curl -s --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } \
    | awk -v n="$2" '$1 == n {printf "%d\n", $2; exit}'
}

# scraper PORT SECONDS OUT : GET /metrics once a second for SECONDS (as a Prometheus
# with a 1 s scrape interval would), pinned to $CLIENT_CPU; writes the number of
# successful scrapes to OUT. Bounded: SECONDS iterations, 1 s timeout each.
scraper() {
  local port=$1 secs=$2 out=$3 ok=0 _
  for _ in $(seq "$secs"); do
    if taskset -c "$CLIENT_CPU" curl -s -o /dev/null --fail --max-time 1 \
         "http://127.0.0.1:$port/metrics" 2>/dev/null; then ok=$((ok + 1)); fi
    sleep 1
  done
  echo "$ok" >"$out"
}

# make_cert DIR : a self-signed certificate for 127.0.0.1 and localhost (DoT and DoH);
# sets TLS_CERT and TLS_KEY
make_cert() {
  TLS_CERT=$1/cert.pem TLS_KEY=$1/key.pem
  [ -f "$TLS_CERT" ] && [ -f "$TLS_KEY" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
    -keyout "$TLS_KEY" -out "$TLS_CERT" -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
}

# busy_ticks : clock ticks all cores have spent busy since boot (/proc/stat: user, nice,
# system, irq, softirq, steal)
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }

# perf PORT FILE DURATION [dnsperf args...] : one dnsperf run pinned to $CLIENT_CPU,
# bounded by -l DURATION; prints the line of dnsperf_parse.py. The server's CPU is
# measured on $PERF_PID (and its descendants). PERF_VERBOSE=0 leaves out -v (no
# per-response lines: no percentiles, and less work for dnsperf). PERF_TAG names the
# output files (default dnsperf), for runs side by side; PERF_KEEP=FILE keeps the
# per-response lines there.
perf() {
  local port=$1 file=$2 dur=$3; shift 3
  local tag=${PERF_TAG:-dnsperf} verbose=() c0 c1 b0 b1
  local out="$SCRATCH/$tag.out" vout="$SCRATCH/$tag.v" tf="$SCRATCH/$tag.time"
  [ "$dur" -le 30 ] || { log "refusing a dnsperf run longer than 30 s"; return 1; }
  [ "${PERF_VERBOSE:-1}" = 0 ] || verbose=(-v)
  b0=$(busy_ticks); c0=$(cpu_ticks "${PERF_PID:-}")
  { TIMEFORMAT='%U %S %R'; time timeout $((dur + 60)) taskset -c "$CLIENT_CPU" dnsperf \
    -s 127.0.0.1 -p "$port" -d "$file" -l "$dur" -c "${PERF_CLIENTS:-8}" \
    -q "${PERF_OUTSTANDING:-200}" -t "${PERF_TIMEOUT:-2}" "${verbose[@]}" "$@" \
    >"$vout" 2>"$out"; } 2>"$tf" || true
  c1=$(cpu_ticks "${PERF_PID:-}"); b1=$(busy_ticks)
  # -v writes one "> RCODE name type latency" line per response, mixed with the summary
  grep -v '^> ' "$vout" >>"$out" || true
  "$PY" "$HERE/dnsperf_parse.py" "$out" "$vout" "${c0:-nan}" "${c1:-nan}" "$(getconf CLK_TCK)" \
    "$(tail -1 "$tf")" "$b0" "$b1"
  if [ -n "${PERF_KEEP:-}" ]; then mv "$vout" "$PERF_KEEP"; else rm -f "$vout"; fi
}
