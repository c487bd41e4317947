# shellcheck shell=bash
# The phases of run.sh (sourced), one function each; the soak is in soak.sh.
# Expects lib.sh and suts.sh and the knobs of run.sh (SUTS, WORKLOADS, ...).
# shellcheck disable=SC2153  # those knobs are set by run.sh

# the systems started by start_suts, by name: port, PID, seconds until ready, RSS, version
declare -A PORT PID STARTUP RSS0 VER
PERF_HEAD="sent\tcompleted\tlost\tqps\tavg_ms\tp50_ms\tp99_ms\tnoerror_pct\tcpu_pct\tclient_cpu_pct\tother_cpu_pct"

sut_opt() {   # sut_opt NAME ACTION DEFAULT : an optional answer of a system's function
  local v; v=$("sut_$1" "$2" x 0 0 2>/dev/null || true); echo "${v:-$3}"
}
sut_bl() { sut_opt "$1" blocklist "$BL_N"; }
sut_sizes() { local z; z=$(sut_opt "$1" sizes "$SIZES"); [ "$z" = none ] || echo "$z"; }

# sut_does NAME WORKLOAD : whether the system serves that workload
sut_does() {
  case $2 in
    *_dot) [[ " $(sut_opt "$1" transports "") " == *" dot "* ]] ;;
    *_doh) [[ " $(sut_opt "$1" transports "") " == *" doh "* ]] ;;
    *) [[ " $(sut_opt "$1" workloads "$2") " == *" $2 "* ]] ;;
  esac
}

# start_suts LABEL "SUTS" [tls] : prepare and start each system in $SCRATCH/LABEL-NAME,
# each on its own port from 5301 on (with DoT and DoH when "tls" is given), all pinned
# to the server core; fills PORT, PID, STARTUP, RSS0 and VER
start_suts() {
  local label=$1 suts=$2 tls=${3:-} port=5301 s d n t0
  for s in $suts; do
    d="$SCRATCH/$label-$s"; rm -rf "$d"; mkdir -p "$d"
    PORT[$s]=$port; port=$((port + 1))
    n=$(sut_bl "$s")
    VER[$s]=$("sut_$s" version "$d" "${PORT[$s]}" "$n" 2>&1 | head -1)
    "sut_$s" prepare "$d" "${PORT[$s]}" "$n"
    [ -z "$tls" ] || "sut_$s" tls "$d" "${PORT[$s]}" "$n"
    t0=$(now)
    "sut_$s" start "$d" "${PORT[$s]}" "$n"
    PID[$s]=$SUT_PID
    STARTUP[$s]=$(wait_answer "${PORT[$s]}" "$(head -1 "$DATA/names-$n.txt")" "$WARN_A" 300 "$t0" || true)
    RSS0[$s]=$(rss_mib "${PID[$s]}")
    log "$s: port ${PORT[$s]} pid ${PID[$s]} ready after ${STARTUP[$s]} s, RSS ${RSS0[$s]} MiB (${VER[$s]})"
    [ "${STARTUP[$s]}" != timeout ] || log "$s did not answer; its log: $d/server.log"
  done
}

stop_suts() {   # "SUTS"
  local s
  for s in $1; do
    [ -n "${PID[$s]:-}" ] || continue
    stop_pid "${PID[$s]}"
    unset "PID[$s]"
  done
}

warm() {   # PORT : one pass over the 1,000 "hit" names (bounded: -n 1, -l 30)
  timeout 60 taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$1" \
    -d "$DATA/q-hit-uniq.txt" -n 1 -l 30 -q 10 >/dev/null 2>&1 || true
}

warm_caches() {   # "SUTS"
  local s
  for s in $1; do kill -CONT "${PID[$s]}" 2>/dev/null || true; warm "${PORT[$s]}"; done
}

# workload WORKLOAD TAG N PORT [COUNT] : the query file, port and dnsperf arguments of a
# workload against a server listening on PORT with the N-name list (sets WL_FILE,
# WL_PORT, WL_ARGS). miss and mix get COUNT (default DUR x 150,000) never-seen names of
# their own, made unique by TAG, in a file WL_TMP to remove after the run.
workload() {
  local w=$1 tag=$2 n=$3 count=${5:-$((DUR * 150000))}
  WL_PORT=$4; WL_ARGS=(); WL_TMP=""
  case $w in
    blocked) WL_FILE="$DATA/q-blocked-$n.txt" ;;
    blocked_tcp) WL_FILE="$DATA/q-blocked-$n.txt"; WL_ARGS=(-m tcp) ;;
    blocked_dot) WL_FILE="$DATA/q-blocked-$n.txt"; WL_PORT=$(dot_port "$WL_PORT"); WL_ARGS=(-m dot) ;;
    hit_dot) WL_FILE="$DATA/q-hit.txt"; WL_PORT=$(dot_port "$WL_PORT"); WL_ARGS=(-m dot) ;;
    blocked_doh)
      WL_FILE="$DATA/q-blocked-$n.txt"; WL_PORT=$(doh_port "$WL_PORT")
      WL_ARGS=(-m doh -O "doh-uri=https://127.0.0.1:$WL_PORT/dns-query" -O "doh-method=$DOH_METHOD") ;;
    hit) WL_FILE="$DATA/q-hit.txt" ;;
    miss) WL_FILE="$SCRATCH/q-miss-$tag.txt"; WL_ARGS=(-n 1); WL_TMP=$WL_FILE
          "$PY" "$HERE/gen.py" miss "$tag" "$count" "$WL_FILE" ;;
    mix) WL_FILE="$SCRATCH/q-mix-$tag.txt"; WL_ARGS=(-n 1); WL_TMP=$WL_FILE
         "$PY" "$HERE/gen.py" mix "$tag" "$count" "$n" "$DATA" "$WL_FILE" ;;
    *) log "unknown workload $w"; return 2 ;;
  esac
}

# run_one NAME WORKLOAD TAG [dnsperf args...] : one measured run against one of the
# systems in PID, every other one paused (SIGSTOP) so that a slow system working
# through its backlog cannot take the server core from the one being measured. A
# system with /metrics is scraped once a second meanwhile. Prints the perf line and
# the number of scrapes ("-" without /metrics).
run_one() {
  local s=$1 w=$2 tag=$3 o mp scr="" r; shift 3
  workload "$w" "$tag" "$(sut_bl "$s")" "${PORT[$s]}"
  for o in "${!PID[@]}"; do [ "$o" = "$s" ] || kill -STOP "${PID[$o]}" 2>/dev/null || true; done
  kill -CONT "${PID[$s]}" 2>/dev/null || true
  sleep 1   # let it drain what is left of its own previous run
  mp=$("sut_$s" metrics x "${PORT[$s]}" 0 2>/dev/null || true)
  rm -f "$SCRATCH/scrapes"
  if [ -n "$mp" ]; then scraper "$mp" "$DUR" "$SCRATCH/scrapes" & scr=$!; fi
  r=$(PERF_OUTSTANDING=$(sut_opt "$s" outstanding "${PERF_OUTSTANDING:-200}") \
    PERF_PID=${PID[$s]} perf "$WL_PORT" "$WL_FILE" "$DUR" "${WL_ARGS[@]}" "$@")
  if [ -n "$scr" ]; then wait "$scr" || true; fi
  [ -z "$WL_TMP" ] || rm -f "$WL_TMP"
  echo "$r $(cat "$SCRATCH/scrapes" 2>/dev/null || echo -)"
}

# interleave TSV "SUTS" "WORKLOADS" : REPS rounds, each one saturation run per workload
# and system (A B C A B C ...); a row each in TSV (header written here)
interleave() {
  local tsv=$1 suts=$2 wls=$3 rep w s r
  echo -e "sut\tworkload\trep\t$PERF_HEAD\tscrapes" >"$tsv"
  for rep in $(seq "$REPS"); do
    for w in $wls; do
      for s in $suts; do
        sut_does "$s" "$w" || continue
        r=$(run_one "$s" "$w" "r$rep$s")
        printf '%s\t%s\t%s\t%s\n' "$s" "$w" "$rep" "$(echo "$r" | tr ' ' '\t')" >>"$tsv"
        log "rep $rep $w $s: $r"
      done
    done
  done
}

# ---- upstream check: dnsperf straight at nsd, from the server core -------------------------
phase_upstream() {
  local r
  "$PY" "$HERE/gen.py" miss up $((DUR * 150000)) "$SCRATCH/q-up.txt"
  r=$(CLIENT_CPU=$SERVER_CPU PERF_PID=$UPSTREAM_PID perf "$UPSTREAM_PORT" "$SCRATCH/q-up.txt" "$DUR" -n 1)
  echo "$r" | awk '{printf "%.0f\t%s\n", $4, $9}' >"$RES/upstream.tsv"
  log "upstream alone (unique names): $r"
}

# ---- throughput: every system on its own port, runs interleaved ---------------------------
# Leaves the systems running for phase_latency; phase_throughput_end stops them.
phase_throughput() {
  local s b p
  echo -e "sut\tversion\tblocklist\tstartup_s\trss_start_mib\trss_end_mib" >"$RES/suts.tsv"
  start_suts sut "$SUTS"
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
  warm_caches "$SUTS"
  interleave "$RES/perf.tsv" "$SUTS" "$WORKLOADS"
}

phase_throughput_end() {
  local s
  for s in $SUTS; do kill -CONT "${PID[$s]}" 2>/dev/null || true; done
  for s in $SUTS; do
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "${VER[$s]}" "$(sut_bl "$s")" "${STARTUP[$s]}" \
      "${RSS0[$s]}" "$(rss_mib "${PID[$s]}")" >>"$RES/suts.tsv"
  done
  stop_suts "$SUTS"
}

# ---- latency at half of saturation: a fixed rate (dnsperf -Q) of half the system's median
# saturation QPS for that workload, interleaved like the runs above (same servers)
phase_latency() {
  local rep w s sat rate r
  echo -e "sut\tworkload\trep\ttarget_qps\t$PERF_HEAD\tscrapes" >"$RES/latency.tsv"
  for rep in $(seq "$REPS"); do
    for w in $LAT_WORKLOADS; do
      for s in $SUTS; do
        sut_does "$s" "$w" || continue
        sat=$(awk -F'\t' -v s="$s" -v w="$w" '$1 == s && $2 == w {print $7}' "$RES/perf.tsv" \
          | sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}')
        [ -n "$sat" ] || continue
        rate=$(awk -v q="$sat" 'BEGIN {r = int(q / 2); print (r < 1 ? 1 : r)}')
        r=$(run_one "$s" "$w" "l$rep$s" -Q "$rate")
        printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$w" "$rep" "$rate" "$(echo "$r" | tr ' ' '\t')" >>"$RES/latency.tsv"
        log "rep $rep latency $w $s at $rate q/s: $r"
      done
    done
  done
}

# ---- sinkhole's own settings: workers and the query log. One worker pinned to the
# server core as above; one worker per core on every core, where dnsperf (and nsd) keep
# their core and so share it with a worker; and the query log on (the default is
# "blocked"), which the runs above turn off like the peers' logs.
phase_settings() {
  local all_cpus rep w setting cpus d r
  echo -e "workload\tsetting\tcpus\trep\t$PERF_HEAD" >"$RES/settings.tsv"
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
        workload "$w" "w$rep${setting//[^a-z0-9]/}" "$BL_N" 5391
        r=$(PERF_PID=$SUT_PID perf 5391 "$WL_FILE" "$DUR" "${WL_ARGS[@]}")
        [ -z "$WL_TMP" ] || rm -f "$WL_TMP"
        printf '%s\t%s\t%s\t%s\t%s\n' "$w" "$setting" "$cpus" "$rep" "$(echo "$r" | tr ' ' '\t')" >>"$RES/settings.tsv"
        log "rep $rep $w, sinkhole with $setting on cpus $cpus: $r"
        stop_pid "$SUT_PID"
      done
    done
  done
}

# ---- each system alone: the throughput runs again, one system started at a time (no
# other server exists, none is paused), with the same dnsperf flags ("same") and
# without -v ("plain": no per-response lines, so dnsperf does less per answer)
phase_alone() {
  local s rep w variant r
  echo -e "sut\tworkload\tvariant\trep\t$PERF_HEAD\tscrapes" >"$RES/alone.tsv"
  for s in $ALONE_SUTS; do
    start_suts alone "$s"
    warm_caches "$s"
    for rep in $(seq "$REPS"); do
      for w in $ALONE_WORKLOADS; do
        sut_does "$s" "$w" || continue
        for variant in same plain; do
          r=$(PERF_VERBOSE=$([ "$variant" = same ] && echo 1 || echo 0) run_one "$s" "$w" "a$rep$s")
          printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$w" "$variant" "$rep" "$(echo "$r" | tr ' ' '\t')" >>"$RES/alone.tsv"
          log "alone rep $rep $w $s ($variant flags): $r"
        done
      done
    done
    stop_suts "$s"
  done
}

# ---- DNS over TLS and over HTTPS: the systems that serve them, started with a
# self-signed certificate, interleaved like the throughput runs
phase_tls() {
  local s t suts="" dot doh note
  make_cert "$SCRATCH"
  echo -e "sut\tversion\tdot\tdoh\tnote" >"$RES/transports.tsv"
  for s in $TLS_SUTS; do
    t=" $(sut_opt "$s" transports "") "
    dot=no; doh=no; note=""
    [[ $t == *" dot "* ]] && dot=yes
    [[ $t == *" doh "* ]] && doh=yes
    case $dot$doh in
      yesno) note="no DNS over HTTPS server in this build" ;;
      noyes) note="no DNS over TLS server in this build" ;;
      nono) note="serves neither DNS over TLS nor DNS over HTTPS" ;;
    esac
    [ "$t" = "  " ] || suts="$suts $s"
    printf '%s\t%s\t%s\t%s\t%s\n' "$s" "$("sut_$s" version x 0 0 2>&1 | head -1)" "$dot" "$doh" "$note" \
      >>"$RES/transports.tsv"
  done
  [ -n "$suts" ] || { log "no system serves DoT or DoH"; return 0; }
  start_suts tls "$suts" tls
  warm_caches "$suts"
  interleave "$RES/tls.tsv" "$suts" "$TLS_WORKLOADS"
  stop_suts "$suts"
}

# ---- /metrics on vs off: two sinkholes, one with metrics: (scraped once a second during
# its runs), interleaved like the throughput runs
phase_metrics() {
  local pair="sinkhole sinkhole_metrics"
  start_suts metrics "$pair"
  warm_caches "$pair"
  REPS=$METRICS_REPS interleave "$RES/metrics.tsv" "$pair" "$METRICS_WORKLOADS"
  stop_suts "$pair"
}

# ---- scaling: sinkhole with workers: N and several dnsperf processes at once; the server's
# CPU (all its processes, from /proc/PID/stat) per query answered
phase_scaling() {
  local rep w n d i t0 c0 c1 b0 b1 line lines files tmps pids
  echo -e "workers\tworkload\trep\tclients\tserver_cpus\tclient_cpus\tsent\tcompleted\tlost\tqps\tp99_ms\tserver_cpu_s\tcpu_us_per_query\tserver_cpu_pct\tclient_cpu_pct\tother_cpu_pct" \
    >"$RES/scaling.tsv"
  for rep in $(seq "$REPS"); do
    for w in $SCALE_WORKLOADS; do
      for n in $SCALE_WORKERS; do
        d="$SCRATCH/scaling"; rm -rf "$d"; mkdir -p "$d"
        sut_sinkhole prepare "$d" 5392 "$BL_N"
        echo "workers: $n" >>"$d/config.yaml"
        SERVER_CPU=$SCALE_SERVER_CPUS sut_sinkhole start "$d" 5392 "$BL_N"
        if ! wait_answer 5392 "$(head -1 "$DATA/names-$BL_N.txt")" "$WARN_A" 300 "$(now)" >/dev/null; then
          log "sinkhole with workers: $n did not answer; its log: $d/server.log"
          stop_pid "$SUT_PID"; continue
        fi
        warm 5392
        # every client's queries written first, so that all start together
        files=(); tmps=(); pids=()
        for i in $(seq "$SCALE_CLIENTS"); do
          workload "$w" "s$rep$n$w$i" "$BL_N" 5392
          files+=("$WL_FILE"); [ -z "$WL_TMP" ] || tmps+=("$WL_TMP")
        done
        c0=$(cpu_ticks "$SUT_PID"); b0=$(busy_ticks); t0=$(now)
        for i in $(seq "$SCALE_CLIENTS"); do
          PERF_TAG="scaling$i" CLIENT_CPU=$SCALE_CLIENT_CPUS PERF_PID="" \
            perf 5392 "${files[$((i - 1))]}" "$DUR" "${WL_ARGS[@]}" >"$d/client-$i.line" &
          pids+=($!)
        done
        wait "${pids[@]}" || true
        c1=$(cpu_ticks "$SUT_PID"); b1=$(busy_ticks); t0=$(echo "$(now) - $t0" | bc)
        [ ${#tmps[@]} = 0 ] || rm -f "${tmps[@]}"
        lines=""
        for i in $(seq "$SCALE_CLIENTS"); do lines+="$(cat "$d/client-$i.line")"$'\n'; done
        # sums over the clients: sent, completed, lost, QPS; the worst p99; client CPU;
        # the rest of the machine: busy ticks less the server's and the clients' CPU
        line=$(echo -n "$lines" | awk -v c0="$c0" -v c1="$c1" -v b0="$b0" -v b1="$b1" \
          -v hz="$(getconf CLK_TCK)" -v dur="$DUR" -v wall="$t0" '
          {s += $1; c += $2; l += $3; q += $4; if ($7 > p) p = $7; cc += $10}
          END {cpu = (c1 - c0) / hz; other = ((b1 - b0) / hz - cpu - cc * dur / 100) / wall
               printf "%d\t%d\t%d\t%.0f\t%.3f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f", s, c, l, q, p, cpu,
                 (c ? 1e6 * cpu / c : 0), 100 * cpu / dur, cc, (other > 0 ? 100 * other : 0)}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$w" "$rep" "$SCALE_CLIENTS" "$SCALE_SERVER_CPUS" \
          "$SCALE_CLIENT_CPUS" "$line" >>"$RES/scaling.tsv"
        log "scaling rep $rep $w workers: $n, $SCALE_CLIENTS dnsperf on cpus $SCALE_CLIENT_CPUS" \
          "(server on $SCALE_SERVER_CPUS, $(echo "$t0" | cut -c1-5) s): $(echo "$line" | tr '\t' ' ')"
        stop_pid "$SUT_PID"
      done
    done
  done
}

# ---- scale: load time, memory, reload under a fixed-rate load (one system at a time) -----
phase_scale() {
  local s n d t0 st rss rl rs rc rlost pp
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
        PERF_TAG=reload PERF_TIMEOUT=1 PERF_PID=$SUT_PID perf 5390 "$DATA/q-blocked-$n.txt" "$RELOAD_DUR" \
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
}

# ---- instructions: CPU instructions per answer, counted by callgrind (sinkhole only) ----
# Timing on a shared machine is noisy; an instruction count is not. For each revision in
# INSTR_REVS ("." is the working tree; others are exported with git archive) and each
# workload in INSTR_WORKLOADS, sinkhole starts under callgrind with counting off, gets
# ready (and warm, for hit) and two seconds into the workload, then counts for one
# saturating dnsperf run of INSTR_DUR seconds (-q 20: batches as at saturation, at the
# slower pace valgrind allows). The
# figure is the instructions the server executed in user space, start-up excluded,
# divided by the answers dnsperf got; system calls are not in it.
phase_instructions() {
  local rev tree d w pid line total
  echo -e "rev\tcommit\tworkload\tcompleted\tinstructions\tper_answer" >"$RES/instructions.tsv"
  for rev in $INSTR_REVS; do
    tree=$REPO
    if [ "$rev" != . ]; then
      tree="$SCRATCH/rev-$rev"; rm -rf "$tree"; mkdir -p "$tree"
      git -C "$REPO" archive "$rev" resolver | tar -x -C "$tree"
    fi
    for w in $INSTR_WORKLOADS; do
      d="$SCRATCH/instr-$rev-$w"; rm -rf "$d"; mkdir -p "$d"
      sut_sinkhole prepare "$d" 5394 "$BL_N"
      # a revision from before the pid_file key gets the configuration without it
      [ "$rev" = . ] || sed -i '/^pid_file:/d' "$d/config.yaml"
      # run from $d: `python -m` puts the current directory before PYTHONPATH, and in a
      # clone that is the working tree's resolver/
      bg_start "$d" env -C "$d" PYTHONPATH="$tree" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$d/callgrind.out" "$PY" -m resolver serve --config "$d/config.yaml"
      pid=$SUT_PID
      if ! wait_answer 5394 "$(head -1 "$DATA/names-$BL_N.txt")" "$WARN_A" 300 "$(now)" >/dev/null; then
        log "instructions $rev $w: sinkhole did not answer, see $d/server.log"
        stop_pid "$pid"; continue
      fi
      [ "$w" != hit ] || warm 5394
      # two seconds of the workload uncounted (names of their own): what a process does
      # once, such as a module imported on first use, is left out of the count
      workload "$w" "u$w" "$BL_N" 5394 4000
      PERF_OUTSTANDING=20 PERF_VERBOSE=0 PERF_PID="" perf "$WL_PORT" "$WL_FILE" 2 "${WL_ARGS[@]}" >/dev/null
      [ -z "$WL_TMP" ] || rm -f "$WL_TMP"
      workload "$w" "i$w" "$BL_N" 5394 $((INSTR_DUR * 2000))
      callgrind_control -i on "$pid" >/dev/null
      line=$(PERF_OUTSTANDING=20 PERF_VERBOSE=0 PERF_PID="" perf "$WL_PORT" "$WL_FILE" "$INSTR_DUR" "${WL_ARGS[@]}")
      callgrind_control -i off "$pid" >/dev/null
      callgrind_control -d "$pid" >/dev/null
      stop_pid "$pid"
      [ -z "$WL_TMP" ] || rm -f "$WL_TMP"
      total=$(cat "$d"/callgrind.out* 2>/dev/null | awk '/^totals:/ {s += $2} END {print s + 0}')
      line=$(echo "$line" | awk -v t="$total" '{printf "%d\t%d\t%.0f", $2, t, ($2 ? t / $2 : 0)}')
      printf '%s\t%s\t%s\t%s\n' "$rev" "$(git -C "$REPO" rev-parse --short "${rev/#./HEAD}")" "$w" \
        "$line" >>"$RES/instructions.tsv"
      log "instructions $rev $w: $(echo "$line" | awk '{print $3 " per answer (" $1 " answers)"}')"
    done
  done
}
