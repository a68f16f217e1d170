#!/usr/bin/env bash
# scaletest against its peers on this machine, in the same run (method of shared/bench-reference):
# Debian nginx, 1 worker, access_log off, 13-byte body, pinned to CPU 0; every generator pinned
# to CPU 1; 50 connections. Tools alternate round by round, and the summary takes medians.
#
#   bash bench/peers.sh                 # all scenarios, ROUNDS=3, DUR=10
#   ONLY=h1 ROUNDS=5 bash bench/peers.sh
#
# Scenarios: h1 (closed loop vs wrk; with tpl also a templated URL, {{seq}} and {{rand_hex 16}}), h2 (HTTP/2 over TLS, 50×10 streams, vs h2load),
# open (open loop at RATES, achieved rate and tail), mem (RSS with 5,000 connections, and RSS
# over a LONG-second run), serve (scaletest serve vs nginx, both driven by wrk), proxy
# (scaletest balance vs haproxy 1 thread, each in front of two nginx, all on CPU 0, wrk on
# CPU 1), proxypaths (with proxy: the balance designs the default replaced, --pipeline 1 and
# --hyper-only), servepaths (with serve: `serve --hyper-only`, the path the quick answers
# replaced). Raw outputs go to $OUT (bench/out/<date>). Only 127.0.0.1 is used.
#
# A/B: AB=/path/to/another/scaletest also measures that binary (e.g. an older commit's release
# build) in the same rounds, as tool "…-ab" (h1, serve and proxy), so a change between two
# builds is seen apart from the machine's mood.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
RATES=${RATES:-"80000 160000"}
LONG=${LONG:-60}
ONLY=${ONLY:-}
SCPU=${SCPU:-0}
GCPU=${GCPU:-1}
OUT=${OUT:-bench/out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/raw"
RESULTS="$OUT/results.tsv"
: > "$RESULTS"

want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
log() { echo "[$(date +%T)] $*" >&2; }

# ---------------------------------------------------------------- tools
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# ST names a prebuilt binary (then nothing is built).
if [ -z "${ST:-}" ]; then
  log "building scaletest (release)"
  cargo build --release -q -p scaletest || exit 1
fi
ST=${ST:-$PWD/target/release/scaletest}
AB=${AB:-}

# ---------------------------------------------------------------- nginx target
RUN=$(mktemp -d)
H1=18080; H2=18443
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost \
  -keyout "$RUN/key.pem" -out "$RUN/cert.pem" >/dev/null 2>&1
. bench/nginx.sh
nginx_conf "$RUN" "  server { listen 127.0.0.1:$H1 backlog=4096; location / { return 200 \"hello, world\\n\"; } }
  server { listen 127.0.0.1:$H2 ssl http2 backlog=4096; ssl_certificate $RUN/cert.pem; ssl_certificate_key $RUN/key.pem;
           http2_max_concurrent_streams 128; location / { return 200 \"hello, world\\n\"; } }" > "$RUN/nginx.conf"
taskset -c "$SCPU" nginx -p "$RUN" -c "$RUN/nginx.conf" -g 'daemon off;' >"$RUN/nginx.out" 2>&1 &
NGINX=$!
cleanup() {
  kill $NGINX ${SERVE:-} ${SERVE_AB:-} ${SERVE_HY:-} ${HAPROXY:-} ${BALANCE:-} ${BALANCE_AB:-} ${BALANCE_NP:-} ${BALANCE_HY:-} 2>/dev/null
  pkill -f "nginx -p $RUN/b" 2>/dev/null
  wait 2>/dev/null; rm -rf "$RUN"
}
trap cleanup EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$H1/" && break; sleep 0.1; done
sleep 0.5
taskset -a -c -p "$SCPU" "$NGINX" >/dev/null 2>&1
for p in $(pgrep -P "$NGINX"); do taskset -a -c -p "$SCPU" "$p" >/dev/null; done
ngpids="$NGINX $(pgrep -P "$NGINX" | tr '\n' ' ')"
SPIDS=$ngpids   # whose CPU counts as "server CPU" in the next measurement
TCK=$(getconf CLK_TCK)
ticks() { local t=0 p; for p in $SPIDS; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
pin_server() { local p; for p in "$@"; do taskset -a -c -p "$SCPU" "$p" >/dev/null 2>&1; done; }

# scaletest serve, one thread, as a target like nginx.
SERVE_PORT=18090
if want serve; then
  taskset -c "$SCPU" "$ST" serve --bind 127.0.0.1:$SERVE_PORT --threads 1 >"$RUN/serve.out" 2>&1 &
  SERVE=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$SERVE_PORT/" && break; sleep 0.1; done
  if [ -n "$AB" ]; then
    taskset -c "$SCPU" "$AB" serve --bind 127.0.0.1:$((SERVE_PORT + 1)) --threads 1 >"$RUN/serve-ab.out" 2>&1 &
    SERVE_AB=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$((SERVE_PORT + 1))/" && break; sleep 0.1; done
  fi
  if want servepaths; then
    taskset -c "$SCPU" "$ST" serve --bind 127.0.0.1:$((SERVE_PORT + 2)) --threads 1 --hyper-only >"$RUN/serve-hy.out" 2>&1 &
    SERVE_HY=$!
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$((SERVE_PORT + 2))/" && break; sleep 0.1; done
  fi
fi
# The proxy scenario: two more nginx (1 worker) as backends, haproxy and scaletest balance.
B1=18082; B2=18083; HAP=18081; BAL=18180; BAL_NP=18181; BAL_HY=18182
if want proxy || want proxypaths; then
  for port in $B1 $B2; do
    mkdir -p "$RUN/b$port"
    cat > "$RUN/b$port.conf" <<CONF
worker_processes 1;
pid $RUN/b$port/nginx.pid;
error_log $RUN/b$port/error.log;
events { worker_connections 8000; }
http { access_log off; keepalive_requests 100000000;
  client_body_temp_path $RUN/b$port; proxy_temp_path $RUN/b$port; fastcgi_temp_path $RUN/b$port; uwsgi_temp_path $RUN/b$port; scgi_temp_path $RUN/b$port;
  server { listen 127.0.0.1:$port backlog=4096; location / { return 200 "hello, world\n"; } } }
CONF
    taskset -c "$SCPU" nginx -p "$RUN/b$port" -c "$RUN/b$port.conf" -g 'daemon off;' >/dev/null 2>&1 &
  done
  cat > "$RUN/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  maxconn 8000
frontend fe
  bind 127.0.0.1:$HAP backlog 4096
  default_backend be
backend be
  balance roundrobin
  server a 127.0.0.1:$B1
  server b 127.0.0.1:$B2
CONF
  taskset -c "$SCPU" haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
  HAPROXY=$!
  taskset -c "$SCPU" "$ST" balance --bind 127.0.0.1:$BAL --admin-bind 127.0.0.1:0 --threads 1 \
    --backend 127.0.0.1:$B1 --backend 127.0.0.1:$B2 >"$RUN/balance.out" 2>&1 &
  BALANCE=$!
  if [ -n "$AB" ]; then
    taskset -c "$SCPU" "$AB" balance --bind 127.0.0.1:$((BAL + 10)) --admin-bind 127.0.0.1:0 --threads 1 \
      --backend 127.0.0.1:$B1 --backend 127.0.0.1:$B2 >"$RUN/balance-ab.out" 2>&1 &
    BALANCE_AB=$!
  fi
  if want proxypaths; then
    # The designs the default replaced: no pipelining, and hyper on both sides.
    taskset -c "$SCPU" "$ST" balance --bind 127.0.0.1:$BAL_NP --admin-bind 127.0.0.1:0 --threads 1 \
      --backend 127.0.0.1:$B1 --backend 127.0.0.1:$B2 --pipeline 1 >"$RUN/balance-np.out" 2>&1 &
    BALANCE_NP=$!
    taskset -c "$SCPU" "$ST" balance --bind 127.0.0.1:$BAL_HY --admin-bind 127.0.0.1:0 --threads 1 \
      --backend 127.0.0.1:$B1 --backend 127.0.0.1:$B2 --hyper-only >"$RUN/balance-hy.out" 2>&1 &
    BALANCE_HY=$!
  fi
  sleep 1.5
  BPIDS="$(pgrep -f "nginx -p $RUN/b" | tr '\n' ' ') $(for p in $(pgrep -f "nginx -p $RUN/b"); do pgrep -P "$p"; done | tr '\n' ' ')"
  pin_server $BPIDS "$HAPROXY" "$BALANCE" ${BALANCE_AB:-} ${BALANCE_NP:-} ${BALANCE_HY:-}
fi

# ---------------------------------------------------------------- one measurement
# measure NAME SCENARIO TOOL cmd... → appends: scenario tool name reqs secs gen_cpu_s srv_cpu_s p50 p99 extra
measure() {
  local name=$1 scen=$2 tool=$3; shift 3
  local t0 t1 out="$OUT/raw/$name.out"
  sleep 1
  t0=$(ticks)
  taskset -c "$GCPU" /usr/bin/time -f '%e %U %S %M' -o "$OUT/raw/$name.time" "$@" >"$out" 2>"$OUT/raw/$name.err"
  t1=$(ticks)
  local wall user sys rss; read -r wall user sys rss < "$OUT/raw/$name.time"
  local reqs secs p50 p99 extra=""
  case $tool in
    wrk*)
      reqs=$(awk '/requests in/{print $1}' "$out")
      secs=$(awk '/requests in/{gsub(/s,/,"",$4); print $4}' "$out")
      p50=$(awk '$1=="50%"{print $2}' "$out"); p99=$(awk '$1=="99%"{print $2}' "$out") ;;
    h2load)
      reqs=$(awk '/^requests:/{print $8}' "$out")
      secs=$(awk '/^finished in/{gsub(/s,/,"",$3); print $3}' "$out")
      p50=n/a; p99=n/a ;;
    scaletest*)
      reqs=$(awk '/ requests in /{gsub(/,/,"",$1); print $1}' "$out")
      secs=$(awk '/ requests in /{gsub(/s,/,"",$4); print $4}' "$out")
      p50=$(awk -F'│' '$2 ~ /^ Latency /{gsub(/ /,"",$4); print $4}' "$out" | head -1)
      p99=$(awk -F'│' '$2 ~ /^ Latency /{gsub(/ /,"",$6); print $6}' "$out" | head -1)
      extra=$(awk '/achieved/{print $5}' "$out" | tr -d '/s;')
      [ -n "$extra" ] && extra="achieved=$extra svc_p99=$(awk -F'│' '$2 ~ /^ Service /{gsub(/ /,"",$6); print $6}' "$out" | head -1) late=$(awk '/^schedule:/{print $4}' "$out")" ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scen" "$tool" "$name" "${reqs:-0}" "${secs:-$wall}" \
    "$(echo "$user + $sys" | bc)" "$(echo "scale=2; ($t1 - $t0) / $TCK" | bc)" "${p50:-n/a}" "${p99:-n/a}" "rss_kb=$rss" "$extra" >> "$RESULTS"
  log "  $name: $(tail -1 "$RESULTS" | cut -f4-)"
}

U1=http://127.0.0.1:$H1/
UA=$("$ST" --version 2>/dev/null | awk '{print "scaletest/" $2}')
U2=https://127.0.0.1:$H2/
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS"
  # Alternate which tool goes first.
  if [ $((r % 2)) -eq 1 ]; then order="peer self"; else order="self peer"; fi
  for who in $order; do
    if want h1; then
      # wrk sends scaletest's User-Agent too: nginx scans that header (browser detection,
      # ngx_strstrn), so the two generators must send the same bytes.
      if [ "$who" = peer ]; then measure "h1-wrk-r$r" h1 wrk wrk -t1 -c50 -d"${DUR}s" --latency -H "User-Agent: $UA" "$U1"
      else measure "h1-scaletest-r$r" h1 scaletest "$ST" load "$U1" -c 50 -d "${DUR}s"; fi
    fi
    # The same closed loop with a templated request: its cost per send beside the static one.
    if want tpl && [ "$who" = self ]; then
      measure "h1-tpl-r$r" h1 scaletest-tpl "$ST" load "${U1}item/{{seq}}?id={{rand_hex 16}}" -c 50 -d "${DUR}s"
    fi
    if want h2; then
      if [ "$who" = peer ]; then measure "h2-h2load-r$r" h2 h2load h2load -t1 -c50 -m10 -D "$DUR" "$U2"
      else measure "h2-scaletest-r$r" h2 scaletest "$ST" load "$U2" --http2 --streams 10 -c 50 -k -d "${DUR}s"; fi
    fi
    # Server and proxy comparisons: wrk drives both; the server CPU is what differs.
    if want serve; then
      if [ "$who" = peer ]; then SPIDS=$ngpids; measure "serve-nginx-r$r" serve wrk wrk -t1 -c50 -d"${DUR}s" --latency "$U1"
      else SPIDS=$SERVE; measure "serve-scaletest-r$r" serve wrk-scaletest wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$SERVE_PORT/"; fi
      SPIDS=$ngpids
    fi
    if want proxy; then
      if [ "$who" = peer ]; then SPIDS="$BPIDS $HAPROXY"; measure "proxy-haproxy-r$r" proxy wrk-haproxy wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$HAP/"
      else SPIDS="$BPIDS $BALANCE"; measure "proxy-scaletest-r$r" proxy wrk-scaletest wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$BAL/"; fi
      SPIDS=$ngpids
    fi
    if [ -n "$AB" ] && [ "$who" = self ]; then
      want h1 && measure "h1-ab-r$r" h1 scaletest-ab "$AB" load "$U1" -c 50 -d "${DUR}s"
      if want serve; then SPIDS=$SERVE_AB; measure "serve-ab-r$r" serve wrk-scaletest-ab wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$((SERVE_PORT + 1))/"; SPIDS=$ngpids; fi
      if want proxy; then SPIDS="$BPIDS $BALANCE_AB"; measure "proxy-ab-r$r" proxy wrk-scaletest-ab wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$((BAL + 10))/"; SPIDS=$ngpids; fi
    fi
    if want servepaths && want serve && [ "$who" = self ]; then
      SPIDS=$SERVE_HY; measure "serve-hyper-r$r" serve wrk-scaletest-hyper wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$((SERVE_PORT + 2))/"
      SPIDS=$ngpids
    fi
    if want proxypaths && [ "$who" = self ]; then
      SPIDS="$BPIDS $BALANCE_NP"; measure "proxy-nopipe-r$r" proxy wrk-scaletest-pipeline1 wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$BAL_NP/"
      SPIDS="$BPIDS $BALANCE_HY"; measure "proxy-hyper-r$r" proxy wrk-scaletest-hyper wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$BAL_HY/"
      SPIDS=$ngpids
    fi
  done
  if want open; then
    for rate in $RATES; do
      measure "open$rate-scaletest-r$r" "open$rate" scaletest "$ST" load "$U1" --rate "$rate" -d "${DUR}s"
    done
  fi
done
if want mem; then
  log "memory: 5,000 connections"
  measure "mem-c5000" mem5000 scaletest "$ST" load "$U1" -c 5000 -d "${DUR}s"
  log "memory over a ${LONG}s open-loop run at 20k req/s"
  taskset -c "$GCPU" "$ST" load "$U1" --rate 20000 -d "${LONG}s" >"$OUT/raw/mem-long.out" 2>&1 &
  pid=$!
  : > "$OUT/raw/mem-long.rss"
  while kill -0 "$pid" 2>/dev/null; do
    awk '/VmRSS/{print $2}' "/proc/$pid/status" 2>/dev/null >> "$OUT/raw/mem-long.rss"; sleep 5
  done
  wait "$pid"
fi

# ---------------------------------------------------------------- summary
python3 - "$RESULTS" "$OUT/raw/mem-long.rss" <<'PY' | tee "$OUT/summary.md"
import sys, statistics as st, os
rows = [l.rstrip('\n').split('\t') for l in open(sys.argv[1]) if l.strip()]
def med(xs): return st.median(xs) if xs else float('nan')
print("| scenario | tool | runs | req/s (median) | gen CPU µs/req | server CPU µs/req | p50 | p99 | notes |")
print("|---|---|---:|---:|---:|---:|---|---|---|")
by = {}
for sc, tool, name, reqs, secs, gcpu, scpu, p50, p99, rss, extra in rows:
    reqs, secs, gcpu, scpu = int(reqs), float(secs), float(gcpu), float(scpu)
    by.setdefault((sc, tool), []).append((reqs / secs if secs else 0, 1e6 * gcpu / reqs if reqs else 0,
                                          1e6 * scpu / reqs if reqs else 0, p50, p99, rss, extra))
for (sc, tool), v in by.items():
    rps = med([x[0] for x in v]); g = med([x[1] for x in v]); s = med([x[2] for x in v])
    mid = sorted(v, key=lambda x: x[0])[len(v) // 2]
    print(f"| {sc} | {tool} | {len(v)} | {rps:,.0f} | {g:.2f} | {s:.2f} | {mid[3]} | {mid[4]} | {mid[5]} {mid[6]} |")
print()
for sc in sorted({k[0] for k in by}):
    tools = {t: med([x[0] for x in v]) for (s2, t), v in by.items() if s2 == sc}
    ours = 'scaletest' if 'scaletest' in tools else 'wrk-scaletest' if 'wrk-scaletest' in tools else None
    if ours and len(tools) > 1:
        for t, r in tools.items():
            if t != ours and r:
                print(f"- {sc}: {ours} / {t} req/s = {tools[ours] / r:.2f}×")
p = sys.argv[2]
if os.path.exists(p):
    rss = [int(x) for x in open(p) if x.strip()]
    if rss:
        print(f"- long open-loop run: RSS every 5 s (KiB): {rss}")
PY
