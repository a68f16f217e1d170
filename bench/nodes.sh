#!/usr/bin/env bash
# Hollow nodes: the memory and CPU of `scaletest nodes` at SIZES nodes against the fake API
# server (a separate process), and the API traffic per node from the fake's request log.
#
#   bash bench/nodes.sh                         # SIZES="100 1000 5000", WATCH=per-node
#   SIZES=5000 WATCH=shared STEADY=60 bash bench/nodes.sh
#
# Per size: the fake on CPU $FCPU, scaletest nodes (release, 2 worker threads) on CPU $NCPU
# (pinning needs taskset; on 2 cores the two share nothing else of ours). After registration
# and a $WARM-second warm-up, $STEADY seconds are measured: scaletest's utime+stime from
# /proc/PID/stat (CPU cores = ticks / CLK_TCK / seconds), VmRSS and VmHWM from
# /proc/PID/status, and the fake's request log (FAKEAPI_CALLS) at both ends. Only 127.0.0.1 is
# used; every process is stopped when its size is done. Raw outputs go to $OUT.
# The faithfulness table (per node per minute, and per pod) comes from
#   cargo run --release -p nodes --example faithful -- 50 10 60
# and the 1,000-pod burst from
#   cargo run --release -p nodes --example burst -- 100 1000
set -uo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"100 1000 5000"}
WATCH=${WATCH:-per-node}
WARM=${WARM:-20}
STEADY=${STEADY:-60}
FCPU=${FCPU:-0}
NCPU=${NCPU:-1}
OUT=${OUT:-bench/out/nodes-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" >&2; }
cargo build --release -q -p scaletest --bin scaletest && cargo build --release -q -p kubefake --example fakeapi || exit 1
BIN=target/release/scaletest
FAKE=target/release/examples/fakeapi
TCK=$(getconf CLK_TCK)
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
calls() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k:v for k,v in d.items() if " in " not in k}))' "$1"; }

printf "nodes\twatch\trss_mib\thwm_mib\tkib_per_node\tcpu_cores\tlease_updates_per_s\n" > "$OUT/results.tsv"
for N in $SIZES; do
  KC="$OUT/kubeconfig-$N"
  CALLS="$OUT/calls-$N.json"
  # Bookmarks once a minute, as the API server sends them (the fake's default is for tests).
  FAKEAPI_BOOKMARK_S=60 FAKEAPI_CALLS="$CALLS" pin "$FCPU" "$FAKE" "$KC" > "$OUT/fake-$N.log" 2>&1 &
  FPID=$!
  for _ in $(seq 100); do [ -s "$KC" ] && [ -s "$CALLS" ] && break; sleep 0.1; done
  pin "$NCPU" "$BIN" nodes --nodes "$N" --kubeconfig "$KC" --watch "$WATCH" --threads 2 \
      --json "$OUT/nodes-$N.json" > "$OUT/nodes-$N.out" 2> "$OUT/nodes-$N.err" &
  NPID=$!
  for _ in $(seq 3000); do grep -q "registered;" "$OUT/nodes-$N.err" 2>/dev/null && break; kill -0 $NPID 2>/dev/null || break; sleep 0.1; done
  log "$N nodes registered; warming up ${WARM}s"
  sleep "$WARM"
  T0=$(ticks $NPID); C0=$(calls "$CALLS"); S0=$(date +%s.%N)
  sleep "$STEADY"
  T1=$(ticks $NPID); C1=$(calls "$CALLS"); S1=$(date +%s.%N)
  RSS=$(kib $NPID VmRSS); HWM=$(kib $NPID VmHWM)
  kill -INT $NPID; wait $NPID
  kill $FPID; wait $FPID 2>/dev/null
  python3 - "$N" "$WATCH" "$RSS" "$HWM" "$T0" "$T1" "$S0" "$S1" "$TCK" "$C0" "$C1" >> "$OUT/results.tsv" <<'PY'
import json, sys
n, watch, rss, hwm, t0, t1, s0, s1, tck = sys.argv[1:10]
c0, c1 = json.loads(sys.argv[10]), json.loads(sys.argv[11])
n = int(n); secs = float(s1) - float(s0)
cpu = (int(t1) - int(t0)) / int(tck) / secs
upd = (c1.get("update leases", 0) - c0.get("update leases", 0)) / secs
print(f"{n}\t{watch}\t{int(rss)/1024:.1f}\t{int(hwm)/1024:.1f}\t{int(rss)/n:.1f}\t{cpu:.3f}\t{upd:.1f}")
mins = secs / 60
with open(sys.argv[0] if False else "/dev/stderr", "w") as e:
    for k in sorted(c1):
        d = c1[k] - c0.get(k, 0)
        if d:
            e.write(f"  {n} nodes: {k:<32} {d / n / mins:8.3f} per node per minute\n")
PY
  log "$(tail -1 "$OUT/results.tsv")"
  # Leave nothing behind: the fake is gone with its objects.
done
column -t "$OUT/results.tsv"
