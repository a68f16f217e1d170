#!/usr/bin/env bash
# Stages kept, counted by nginx (issue 23): `scaletest load --stages STAGES` against Debian
# nginx (1 worker, stub_status) on CPU 0, the generator on CPU 1; ROUNDS runs. Only 127.0.0.1.
#
#   ST=target/release/scaletest bash bench/stages.sh      # STAGES=5s:2000,5s:2000,5s:6000
#
# Per run: nginx's count of the run's requests (stub_status before and after) against the
# schedule's total, and the report's per-stage table (planned vs sent; each second counted in
# the stage holding its middle), from the run file.
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
for r in $(seq "$ROUNDS"); do
  before=$(served "$PORT")
  taskset -c 1 "$ST" load "http://127.0.0.1:$PORT/" --stages "$STAGES" --json "$OUT/r$r.json" > "$OUT/r$r.txt" 2>&1
  after=$(served "$PORT")
  python3 - "$OUT/r$r.json" "$((after - before - 1))" "$r" <<'PY' | tee -a "$OUT/summary.md"
import json, sys
run = json.load(open(sys.argv[1]))
nginx, r = int(sys.argv[2]), sys.argv[3]
planned = sum(s["planned"] for s in run["stages"])
print(f"round {r}: nginx counted {nginx:,} of {planned:,.0f} scheduled ({100 * nginx / planned:.2f} %)")
for i, s in enumerate(run["stages"], 1):
    print(f"  stage {i} ({s['start_s']:g}–{s['end_s']:g} s): planned {s['planned']:,.0f}, sent {s['sent']:,} "
          f"({100 * s['sent'] / s['planned']:.2f} %), failed {s['failed']}, p99 {s['p99_ms']:.2f} ms")
PY
done
log "results in $OUT"
