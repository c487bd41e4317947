# shellcheck shell=bash
# The fake upstream and the systems under test (sourced by run.sh).
#
# A system is ONE function:  sut_<name> ACTION DIR PORT N
#   version    print a one-line version string
#   prepare    write its configuration into DIR: listen on 127.0.0.1:PORT (UDP and TCP),
#              forward what is not blocked to 127.0.0.1:$UPSTREAM_PORT, block the N names
#              of $DATA/names-N.txt with A 192.0.2.80 / AAAA 2001:db8::80
#   start      start it in the foreground with `bg_start DIR cmd...` (sets SUT_PID);
#              the time from here until a blocked name answers is its load time
#   reload     add $CANARY to its blocked names in DIR and make $SUT_PID reload;
#              return 1 when it cannot reload
#   sizes      (optional) block-list sizes for the scale phase ("none" to skip it)
#   blocklist  (optional) block-list size for the throughput phase (default $BL_N)
#   workloads  (optional) the workloads that apply (default: all)
#   outstanding (optional) dnsperf -q for its throughput runs (default $PERF_OUTSTANDING)
#   transports (optional) the encrypted transports it serves: "dot", "doh" or both
#   tls        (optional, after prepare) add DNS over TLS on $(dot_port PORT) and DNS over
#              HTTPS at /dns-query on $(doh_port PORT), with $TLS_CERT and $TLS_KEY
#   metrics    (optional) the port of its Prometheus /metrics, scraped during its runs

REPO=${REPO:-$(cd "$HERE/.." && pwd)}

# The other ports of a system that listens for plain DNS on PORT
dot_port() { echo $(($1 + 100)); }
doh_port() { echo $(($1 + 200)); }
metrics_port() { echo $(($1 + 300)); }

# ensure_format FMT N : the N-name list in one system's format, generated once
ensure_format() {
  [ -f "$DATA/$1-$2" ] || "$PY" "$HERE/gen.py" format "$1" "$2" "$DATA"
}

# ---- fake upstream: nsd, authoritative for bench.test. (wildcard A and AAAA) ----------
upstream_start() {   # DIR PORT ; pinned to CLIENT_CPU so it never competes with the SUT
  local dir=$1 port=$2
  mkdir -p "$dir"
  cp "$DATA/bench.test.zone" "$dir/"
  cat >"$dir/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1@$port
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "$dir"
  database: ""
  zonelistfile: "$dir/zone.list"
  xfrdfile: "$dir/xfrd.state"
  pidfile: "$dir/nsd.pid"
  logfile: "$dir/nsd.log"
  do-ip6: no
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
  refuse-any: no
remote-control:
  control-enable: no
zone:
  name: bench.test
  zonefile: "$dir/bench.test.zone"
CONF
  taskset -c "$CLIENT_CPU" nsd -d -c "$dir/nsd.conf" >"$dir/server.log" 2>&1 &
  UPSTREAM_PID=$!
  ALL_PIDS="$ALL_PIDS $UPSTREAM_PID"
}

# ---- sinkhole (this repository's working tree) ----------------------------------------
sut_sinkhole() {
  local dir=$2 port=$3 n=$4
  case $1 in
    version)
      echo "sinkhole $(PYTHONPATH=$REPO "$PY" -c 'import resolver; print(resolver.__version__)')" \
        "($(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no git'))" ;;
    prepare)
      cp "$DATA/names-$n.txt" "$dir/names.txt"
      cat >"$dir/policy.yaml" <<YAML
id: bench-blocklist
title: Benchmark block list
action: warning-page
lists:
  - file: names.txt
    format: domains
YAML
      cat >"$dir/config.yaml" <<YAML
listen: ["127.0.0.1:$port"]
upstreams: ["127.0.0.1:$UPSTREAM_PORT"]
policies: ["policy.yaml"]
warning_page:
  ipv4: ["$WARN_A"]
  ipv6: ["$WARN_AAAA"]
query_log: "off"
pid_file: "$dir/sinkhole.pid"
YAML
      ;;
    start)
      # `python -m resolver` is the `sinkhole` command, run from this clone's sources
      bg_start "$dir" env PYTHONPATH="$REPO" "$PY" -m resolver serve --config "$dir/config.yaml" ;;
    reload)
      echo "$CANARY" >>"$dir/names.txt"
      kill -HUP "$SUT_PID" ;;
    transports) echo "dot doh" ;;
    tls)
      cat >>"$dir/config.yaml" <<YAML
listen_tls: ["127.0.0.1:$(dot_port "$port")"]
listen_https: ["127.0.0.1:$(doh_port "$port")"]
tls: {cert: "$TLS_CERT", key: "$TLS_KEY"}
YAML
      ;;
  esac
}

# ---- sinkhole at another revision (BASE_REV), for a before/after in one interleaved run ----
sut_sinkhole_base() {
  local dir=$2 tree="$SCRATCH/base-${BASE_REV:-}"
  case $1 in
    version)
      echo "sinkhole at $(git -C "$REPO" rev-parse --short "${BASE_REV:?set BASE_REV}")" ;;
    prepare)
      sut_sinkhole "$@"
      sed -i '/^pid_file:/d' "$dir/config.yaml"   # older revisions may not know the key
      if [ ! -d "$tree" ]; then
        mkdir -p "$tree"
        git -C "$REPO" archive "${BASE_REV:?set BASE_REV}" resolver | tar -x -C "$tree"
      fi ;;
    start)
      # from $dir: `python -m` puts the current directory before PYTHONPATH
      bg_start "$dir" env -C "$dir" PYTHONPATH="$tree" "$PY" -m resolver serve \
        --config "$dir/config.yaml" ;;
    transports|tls) return 1 ;;
    *) sut_sinkhole "$@" ;;
  esac
}

# ---- sinkhole, the optional compiled build (setup.py, SINKHOLE_MYPYC=1) -----------------
# compiled_tree : this clone's sources with the compiled core, built once per bench run
compiled_tree() {
  local tree="$SCRATCH/compiled"
  if [ ! -d "$tree/resolver" ]; then
    mkdir -p "$tree"
    cp -r "$REPO/resolver" "$REPO/setup.py" "$REPO/pyproject.toml" "$REPO/README.md" "$tree/"
    find "$tree/resolver" -name '*.so' -delete
    (cd "$tree" && SINKHOLE_MYPYC=1 "$PY" setup.py -q build_ext --inplace >build.log 2>&1) \
      || { log "the compiled build failed: $tree/build.log"; return 1; }
  fi
  echo "$tree"
}

sut_sinkhole_compiled() {
  local dir=$2 tree
  tree=$(compiled_tree) || return 1
  case $1 in
    version)
      echo "$(env -C "$tree" "$PY" -m resolver --version | paste -sd " ")" \
        "($(git -C "$REPO" describe --always --dirty 2>/dev/null || echo 'no git'))" ;;
    start)
      # from the tree: `python -m` puts the current directory before PYTHONPATH
      bg_start "$dir" env -C "$tree" PYTHONPATH="$tree" "$PY" -m resolver serve \
        --config "$dir/config.yaml" ;;
    *) sut_sinkhole "$@" ;;   # prepare, reload, transports, tls: as the pure build
  esac
}

# ---- sinkhole with /metrics on (scraped once a second during its runs) ----------------
sut_sinkhole_metrics() {
  case $1 in
    prepare)
      sut_sinkhole "$@"
      echo "metrics: 127.0.0.1:$(metrics_port "$3")" >>"$2/config.yaml" ;;
    metrics) metrics_port "$3" ;;
    transports|tls) return 1 ;;
    *) sut_sinkhole "$@" ;;
  esac
}

# ---- dnsmasq (the engine inside Pi-hole), block list as addn-hosts -------------------
sut_dnsmasq() {
  local dir=$2 port=$3 n=$4
  case $1 in
    version) dnsmasq --version | head -1 | sed 's/ *Copyright.*//' ;;
    prepare)
      ensure_format hosts "$n"
      cp "$DATA/hosts-$n" "$dir/block.hosts"
      cat >"$dir/dnsmasq.conf" <<CONF
port=$port
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
no-poll
server=127.0.0.1#$UPSTREAM_PORT
addn-hosts=$dir/block.hosts
cache-size=10000
dns-forward-max=1000
user=root
pid-file=$dir/dnsmasq.pid
log-facility=$dir/dnsmasq.log
CONF
      ;;
    start) bg_start "$dir" dnsmasq -k -C "$dir/dnsmasq.conf" ;;
    reload)
      printf '%s %s\n' "$WARN_A" "$CANARY" >>"$dir/block.hosts"
      kill -HUP "$SUT_PID" ;;
  esac
}

# ---- unbound with an RPZ zone, forward-zone "." -> upstream ---------------------------
sut_unbound() {
  local dir=$2 port=$3 n=$4
  case $1 in
    version) echo "unbound $(unbound -V | head -1 | sed 's/^Version //')" ;;
    prepare)
      ensure_format rpz "$n"
      cp "$DATA/rpz-$n" "$dir/block.rpz"
      cat >"$dir/unbound.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $port
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$dir"
  pidfile: "$dir/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 0
  num-threads: 1
  do-ip6: no
  outgoing-interface: 127.0.0.1
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  module-config: "respip iterator"
  msg-cache-size: 64m
  rrset-cache-size: 128m
  num-queries-per-thread: 4096
  outgoing-range: 8192
  qname-minimisation: no
  so-reuseport: no
  # unbound answers the RFC 6761 name "test." itself (NXDOMAIN) unless told not to
  local-zone: "test." nodefault
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@$UPSTREAM_PORT
rpz:
  name: rpz.bench
  zonefile: "$dir/block.rpz"
remote-control:
  control-enable: no
CONF
      ;;
    start) bg_start "$dir" unbound -d -c "$dir/unbound.conf" ;;
    reload)
      printf '%s A %s\n' "$CANARY" "$WARN_A" >>"$dir/block.rpz"
      kill -HUP "$SUT_PID" ;;
    transports)   # DNS over HTTPS only in a build with libnghttp2
      if unbound -V 2>/dev/null | grep -q nghttp2; then echo "dot doh"; else echo dot; fi ;;
    tls)
      local tls="  tls-service-key: \"$TLS_KEY\"\n  tls-service-pem: \"$TLS_CERT\"\n"
      tls+="  interface: 127.0.0.1@$(dot_port "$port")\n  tls-port: $(dot_port "$port")\n"
      case " $(sut_unbound transports x 0 0) " in *" doh "*)
        tls+="  interface: 127.0.0.1@$(doh_port "$port")\n  https-port: $(doh_port "$port")\n"
        tls+="  http-endpoint: \"/dns-query\"\n" ;;
      esac
      # added to the server: clause (awk -v turns the \n into line breaks)
      awk -v add="$tls" '{print} /^server:$/ && !done {printf "%s", add; done = 1}' \
        "$dir/unbound.conf" >"$dir/unbound.tls" && mv "$dir/unbound.tls" "$dir/unbound.conf" ;;
  esac
}

# ---- PowerDNS Recursor with rpzFile (optional: not in the default SUTS) ---------------
sut_pdns() {
  local dir=$2 port=$3 n=$4
  case $1 in
    version) pdns_recursor --version 2>&1 | grep -m1 -o 'PowerDNS Recursor [^ ]*' ;;
    prepare)
      ensure_format rpz "$n"
      cp "$DATA/rpz-$n" "$dir/block.rpz"
      echo "rpzFile(\"$dir/block.rpz\", {policyName=\"bench\"})" >"$dir/rpz.lua"
      cat >"$dir/recursor.conf" <<CONF
local-address=127.0.0.1
local-port=$port
daemon=no
config-dir=$dir
socket-dir=$dir
threads=1
pdns-distributes-queries=no
reuseport=no
# bench.test is forwarded explicitly: with only ".", pdns learns the zone's NS
# (ns.bench.test = 127.0.0.1, port 53) from the answers and then asks it directly.
forward-zones=bench.test=127.0.0.1:$UPSTREAM_PORT
forward-zones-recurse=.=127.0.0.1:$UPSTREAM_PORT
query-local-address=127.0.0.1
dnssec=off
lua-config-file=$dir/rpz.lua
security-poll-suffix=
quiet=yes
loglevel=3
CONF
      ;;
    start) bg_start "$dir" pdns_recursor --config-dir="$dir" ;;
    reload)
      printf '%s A %s\n' "$CANARY" "$WARN_A" >>"$dir/block.rpz"
      rec_control --socket-dir="$dir" --timeout=600 reload-lua-config >/dev/null ;;
  esac
}

# ---- naive Python baseline: dnslib's intercept proxy, 1,000 names --------------------
# No cache and a linear fnmatch scan per query (cost grows with N), so only the first
# 1,000 names of the list are loaded, and it is left out of the scale phase. It serves
# tens of queries per second: a window of 20 outstanding queries saturates it, where 200
# would only pile up a backlog that times out and outlives the run.
sut_dnslib1k() {
  local dir=$2 port=$3
  case $1 in
    version)
      "$PY" -c 'import dnslib, sys; print("dnslib", dnslib.version, "(python", sys.version.split()[0] + ")")' ;;
    prepare) ensure_format dnslib 1000 ;;
    start)
      BG_STDIN="$DATA/dnslib-1000" bg_start "$dir" "$PY" -m dnslib.intercept \
        -a 127.0.0.1 -p "$port" -u "127.0.0.1:$UPSTREAM_PORT" --tcp -i - --all-qtypes \
        --log=-request,-reply,-truncated,-error ;;
    reload) return 1 ;;
    blocklist) echo 1000 ;;
    sizes) echo none ;;
    outstanding) echo 20 ;;
  esac
}
