# shellcheck shell=bash
# The soak (sourced by run.sh; run it with `ONLY=soak SOAK=600 bench/run.sh`).
#
# SOAK seconds of the mix workload against one sinkhole (metrics on) at a fixed rate:
# SOAK_QPS, or half of the saturation rate a DUR-second closed-loop mix run measured
# first. dnsperf runs in back-to-back chunks of SOAK_CHUNK seconds (each bounded by -l
# and a timeout), so each chunk has its own lost count and latency percentiles. Every
# SOAK_SAMPLE seconds: memory (RSS and PSS over all the server's processes), cache
# entries and the reload counters from /metrics. Every SOAK_RELOAD seconds, from half
# of it on: a reload, alternately with a name added to the block list (the policy
# really changes and is rebuilt) and a bare SIGHUP (nothing changed).
#
# Writes soak-info.tsv, soak-samples.tsv, soak-chunks.tsv, soak-reloads.tsv and (with
# soak.py) soak-minutes.tsv into $RES.

SOAK_PORT=5395

# soak_queries DIR K RATE SECONDS : the mix queries of chunk K (its own unique names)
soak_queries() {
  nice -n 10 "$PY" "$HERE/gen.py" mix "soak$1$2" $(($3 * $4 * 11 / 10 + 1000)) "$BL_N" "$DATA" \
    "$1/q-$2.txt"
}

# soak_sample DIR T0 : one row of soak-samples.tsv
soak_sample() {
  local d=$1 t0=$2 mp m
  mp=$(metrics_port "$SOAK_PORT")
  m=$({ curl -s --max-time 2 "http://127.0.0.1:$mp/metrics" 2>/dev/null || true; } | awk '
    $1 == "sinkhole_cache_entries" {e = $2} $1 == "sinkhole_cache_capacity" {c = $2}
    $1 == "sinkhole_reloads_total" {r = $2} $1 == "sinkhole_reload_failures_total" {f = $2}
    END {printf "%s\t%s\t%s\t%s", (e == "" ? "-" : int(e)), (c == "" ? "-" : int(c)),
                                  (r == "" ? "-" : int(r)), (f == "" ? "-" : int(f))}')
  printf '%s\t%s\t%s\t%s\n' "$(echo "$(now) - $t0" | bc | awk '{printf "%.1f", $1}')" \
    "$(mem_mib "$SUT_PID" | tr ' ' '\t')" "$m" \
    "$(awk -v t="$(cpu_ticks "$SUT_PID")" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}')"
}

# soak_chunks DIR RATE T0 END : back-to-back dnsperf runs at RATE until END; a row each
# in soak-chunks.tsv, their latencies (microseconds) in DIR/lat-MINUTE
soak_chunks() {
  local d=$1 rate=$2 t0=$3 end=$4 k=0 left len ts te r gp minute
  while :; do
    left=$(awk -v e="$end" -v n="$(now)" 'BEGIN {printf "%d", e - n}')
    [ "$left" -ge 1 ] || break
    len=$((left < SOAK_CHUNK ? left : SOAK_CHUNK))
    [ -f "$d/q-$k.txt" ] || soak_queries "$d" "$k" "$rate" "$len"
    soak_queries "$d" $((k + 1)) "$rate" "$SOAK_CHUNK" &   # the next chunk's, meanwhile
    gp=$!
    ts=$(now)
    r=$(PERF_TAG=soak PERF_KEEP="$d/chunk.v" PERF_PID=$SUT_PID \
      perf "$SOAK_PORT" "$d/q-$k.txt" "$len" -n 1 -Q "$rate")
    te=$(now)
    printf '%s\t%s\t%s\t%s\t%s\n' "$k" \
      "$(echo "$ts - $t0" | bc | awk '{printf "%.1f", $1}')" \
      "$(echo "$te - $t0" | bc | awk '{printf "%.1f", $1}')" "$len" "$(echo "$r" | tr ' ' '\t')" \
      >>"$RES/soak-chunks.tsv"
    minute=$(echo "($ts - $t0) / 60" | bc)
    # shellcheck disable=SC2016
    nice -n 10 awk '/^> / {printf "%d\n", $NF * 1000000}' "$d/chunk.v" >>"$d/lat-$minute"
    rm -f "$d/chunk.v" "$d/q-$k.txt"
    wait "$gp" || true
    k=$((k + 1))
  done
  rm -f "$d/q-$k.txt"
}

# soak_reload DIR K T0 : reload number K; odd: a name added to the list first, even: a
# bare SIGHUP. One row of soak-reloads.tsv: the seconds until /metrics counts it and
# (for a changed list) until the new name is blocked.
soak_reload() {
  local d=$1 k=$2 t0=$3 mp kind=sighup name="soak-reload-$2.example" before ts counted="timeout" \
    blocked="-" n end
  mp=$(metrics_port "$SOAK_PORT")
  before=$(metric "$mp" sinkhole_reloads_total)
  if [ $((k % 2)) = 1 ]; then kind=changed; echo "$name" >>"$d/names.txt"; fi
  ts=$(now)
  kill -HUP "$SUT_PID"
  end=$(echo "$ts + 50" | bc)
  while [ "$(echo "$(now) < $end" | bc)" = 1 ]; do
    n=$(metric "$mp" sinkhole_reloads_total)
    if [ -n "$n" ] && [ -n "$before" ] && [ "$n" -gt "$before" ]; then
      counted=$(echo "$(now) - $ts" | bc | awk '{printf "%.2f", $1}'); break
    fi
    sleep 0.1
  done
  [ "$kind" = sighup ] || blocked=$(wait_answer "$SOAK_PORT" "$name" "$WARN_A" 50 "$ts" || true)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$(echo "$ts - $t0" | bc | awk '{printf "%.1f", $1}')" \
    "$kind" "$counted" "$blocked" "$(metric "$mp" sinkhole_reloads_total)" \
    "$(metric "$mp" sinkhole_reload_failures_total)" >>"$RES/soak-reloads.tsv"
}

soak_start() {   # DIR : a fresh sinkhole with metrics (and SOAK_WORKERS), warmed
  local d=$1
  rm -rf "$d"; mkdir -p "$d"
  sut_sinkhole prepare "$d" "$SOAK_PORT" "$BL_N"
  echo "metrics: 127.0.0.1:$(metrics_port "$SOAK_PORT")" >>"$d/config.yaml"
  [ -z "${SOAK_WORKERS:-}" ] || echo "workers: $SOAK_WORKERS" >>"$d/config.yaml"
  sut_sinkhole start "$d" "$SOAK_PORT" "$BL_N"
  wait_answer "$SOAK_PORT" "$(head -1 "$DATA/names-$BL_N.txt")" "$WARN_A" 300 "$(now)" >/dev/null \
    || { log "the soak's sinkhole did not answer; its log: $d/server.log"; return 1; }
  warm "$SOAK_PORT"
}

phase_soak() {
  local d="$SCRATCH/soak" sat rate t0 end k=1 el next_reload rpids=() cp
  # the rate: given, or half of a short saturation run on a server of its own
  if [ -n "${SOAK_QPS:-}" ]; then
    sat="-"; rate=$SOAK_QPS
  else
    soak_start "$d" || return 1
    workload mix soaksat "$BL_N" "$SOAK_PORT"
    sat=$(PERF_PID=$SUT_PID perf "$SOAK_PORT" "$WL_FILE" "$DUR" "${WL_ARGS[@]}" | awk '{printf "%.0f", $4}')
    rm -f "$WL_TMP"
    stop_pid "$SUT_PID"
    rate=$(awk -v q="$sat" 'BEGIN {r = int(q / 2); print (r < 1 ? 1 : r)}')
  fi
  soak_start "$d" || return 1
  {
    printf 'key\tvalue\n'
    printf 'version\t%s\n' "$(sut_sinkhole version x 0 0)"
    printf 'saturation_qps\t%s\nrate_qps\t%s\nduration_s\t%s\n' "$sat" "$rate" "$SOAK"
    printf 'chunk_s\t%s\nsample_s\t%s\nreload_every_s\t%s\n' "$SOAK_CHUNK" "$SOAK_SAMPLE" "$SOAK_RELOAD"
    printf 'workers\t%s\nblocklist\t%s\nclients\t%s\noutstanding\t%s\ntimeout_s\t%s\n' \
      "${SOAK_WORKERS:-default}" "$BL_N" "${PERF_CLIENTS:-8}" "${PERF_OUTSTANDING:-200}" "${PERF_TIMEOUT:-2}"
  } >"$RES/soak-info.tsv"
  echo -e "t_s\trss_mib\tpss_mib\tprocesses\tcache_entries\tcache_capacity\treloads\treload_failures\tcpu_s" \
    >"$RES/soak-samples.tsv"
  echo -e "chunk\tstart_s\tend_s\tlength_s\t$PERF_HEAD" >"$RES/soak-chunks.tsv"
  echo -e "reload\tt_s\tkind\tcounted_s\tblocked_s\treloads\treload_failures" >"$RES/soak-reloads.tsv"
  log "soak: ${SOAK} s of mix at $rate q/s (saturation $sat), a reload every $SOAK_RELOAD s"
  soak_queries "$d" 0 "$rate" "$SOAK_CHUNK"
  t0=$(now); end=$(echo "$t0 + $SOAK" | bc)
  soak_sample "$d" "$t0" >>"$RES/soak-samples.tsv"
  soak_chunks "$d" "$rate" "$t0" "$end" &
  cp=$!
  next_reload=$((SOAK_RELOAD / 2))
  while :; do
    sleep "$SOAK_SAMPLE"
    el=$(echo "$(now) - $t0" | bc | cut -d. -f1); el=${el:-0}
    [ "$el" -lt "$SOAK" ] || break
    soak_sample "$d" "$t0" >>"$RES/soak-samples.tsv"
    if [ "$el" -ge "$next_reload" ] && [ "$next_reload" -lt $((SOAK - 5)) ]; then
      soak_reload "$d" "$k" "$t0" &
      rpids+=($!); k=$((k + 1)); next_reload=$((next_reload + SOAK_RELOAD))
    fi
    log "soak ${el} s: $(tail -1 "$RES/soak-samples.tsv" | tr '\t' ' ')"
  done
  wait "$cp" || true
  [ ${#rpids[@]} = 0 ] || wait "${rpids[@]}" || true
  soak_sample "$d" "$t0" >>"$RES/soak-samples.tsv"
  stop_pid "$SUT_PID"
  nice -n 10 "$PY" "$HERE/soak.py" "$d" "$RES"
  rm -f "$d"/lat-*
}
