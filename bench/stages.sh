#!/usr/bin/env bash
# Stages kept, counted by nginx (issue 23): `scaletest load --stages STAGES` against Debian
# nginx (1 worker, stub_status) on CPU 0, the generator on CPU 1; ROUNDS runs. Then the same
# stages split over BOTS loadbots by `scaletest aggregate --stages` (aggregator and bots on
# CPU 1), ROUNDS runs. Only 127.0.0.1.
#
#   ST=target/release/scaletest bash bench/stages.sh      # STAGES=5s:2000,5s:2000,5s:6000 BOTS=3
#
# Per run: nginx's count of the run's requests (stub_status before and after) against the
# schedule's total, and the report's per-stage table (planned vs sent; each second counted in
# the stage holding its middle), from the run file (the aggregator's results.json).
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
STAGES=${STAGES:-5s:2000,5s:2000,5s:6000}
OUT=${OUT:-bench/out/stages-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" >&2; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
if [ -z "${ST:-}" ]; then
  log "building scaletest (release)"
  cargo build --release -q -p scaletest || exit 1
fi
ST=${ST:-$PWD/target/release/scaletest}
RUN=$(mktemp -d)
PORT=18481
. bench/nginx.sh
nginx_stub "$RUN" "$PORT" 0
trap 'kill $NGINX 2>/dev/null; wait 2>/dev/null; rm -rf "$RUN"' EXIT
BOTS=${BOTS:-3}
# What nginx counted between two stub_status reads against the run file's stages.
judge() { # RUN.json NGINX_COUNT LABEL
  python3 - "$1" "$2" "$3" <<'PY' | tee -a "$OUT/summary.md"
import json, sys
run = json.load(open(sys.argv[1]))
nginx, label = int(sys.argv[2]), sys.argv[3]
planned = sum(s["planned"] for s in run["stages"])
print(f"{label}: nginx counted {nginx:,} of {planned:,.0f} scheduled ({100 * nginx / planned:.2f} %)")
for i, s in enumerate(run["stages"], 1):
    print(f"  stage {i} ({s['start_s']:g}–{s['end_s']:g} s): planned {s['planned']:,.0f}, sent {s['sent']:,} "
          f"({100 * s['sent'] / s['planned']:.2f} %), failed {s['failed']}, p99 {s['p99_ms']:.2f} ms")
PY
}
for r in $(seq "$ROUNDS"); do
  before=$(served "$PORT")
  taskset -c 1 "$ST" load "http://127.0.0.1:$PORT/" --stages "$STAGES" --json "$OUT/r$r.json" > "$OUT/r$r.txt" 2>&1
  after=$(served "$PORT")
  judge "$OUT/r$r.json" "$((after - before - 1))" "load, round $r"
done
for r in $(seq "$ROUNDS"); do
  dir="$RUN/agg$r"
  before=$(served "$PORT")
  taskset -c 1 "$ST" aggregate "http://127.0.0.1:$PORT/" --stages "$STAGES" --bind 127.0.0.1:0 \
    --out "$dir" > "$OUT/agg$r.txt" 2>&1 &
  agg=$!
  for _ in $(seq 100); do grep -q "listening on" "$OUT/agg$r.txt" 2>/dev/null && break; sleep 0.1; done
  addr=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$OUT/agg$r.txt" | head -1)
  bots=()
  for b in $(seq "$BOTS"); do
    taskset -c 1 "$ST" bot --aggregator "$addr" --token-file "$dir/token" --name "b$b" \
      --exit-when-finished > "$OUT/agg$r-bot$b.txt" 2>&1 &
    bots+=($!)
  done
  wait "$agg" "${bots[@]}"
  after=$(served "$PORT")
  cp "$dir/results.json" "$OUT/agg$r.json"
  judge "$OUT/agg$r.json" "$((after - before - 1))" "aggregate over $BOTS bots, round $r"
done
log "results in $OUT"
