#!/usr/bin/env bash
# A complete load test on this machine with no other set-up: builds scaletest, then, all on
# 127.0.0.1,
#   1. a closed-loop and an open-loop test against `scaletest serve`;
#   2. a rolling update from v1 to v2 behind `scaletest balance` while an open-loop load runs,
#      and the report that shows whether any request failed.
# Results go to ./quickstart-out/. (When `scaletest demo` exists it takes this script's place.)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5}
OUT=${OUT:-quickstart-out}
mkdir -p "$OUT"
if ! command -v cargo >/dev/null; then
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
echo "== building scaletest (release)"
cargo build --release -q -p scaletest
ST=$PWD/target/release/scaletest

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start NAME ARGS...: run a scaletest server in the background; its address goes in ADDR.
start() {
  local name=$1; shift
  "$ST" "$@" > "$OUT/$name.log" 2>&1 &
  PIDS+=($!)
  LAST=$!
  for _ in $(seq 100); do grep -q "listening on" "$OUT/$name.log" 2>/dev/null && break; sleep 0.05; done
  ADDR=$(sed -n 's|^listening on https\?://\([^ ]*\).*|\1|p' "$OUT/$name.log" | head -1)
}

start target serve --bind 127.0.0.1:0 --threads 1
TARGET=$ADDR
echo
echo "== closed loop: 50 connections for ${DUR}s against scaletest serve at http://$TARGET/"
"$ST" load "http://$TARGET/" -c 50 -d "${DUR}s" --json "$OUT/closed.json"
echo
echo "== open loop: 20,000 req/s with Poisson arrivals for ${DUR}s"
"$ST" load "http://$TARGET/" --rate 20000 --arrival poisson -d "${DUR}s" --percentiles --json "$OUT/open.json"

echo
echo "== rolling update under load: two v1 servers behind scaletest balance, replaced by v2"
start v1a serve --bind 127.0.0.1:0 --threads 1 --version-label v1 --drain-delay 1s; V1A=$ADDR; P1A=$LAST
start v1b serve --bind 127.0.0.1:0 --threads 1 --version-label v1 --drain-delay 1s; V1B=$ADDR; P1B=$LAST
printf 'quickstart-token\n' > "$OUT/token"
start lb balance --bind 127.0.0.1:0 --admin-bind 127.0.0.1:0 --admin-token-file "$OUT/token" \
  --health-interval 200ms --backend "$V1A" --backend "$V1B"
LB=$ADDR
ADMIN=$(sed -n 's|.*admin on http://\([^)]*\)).*|\1|p' "$OUT/lb.log")
auth=(-H "Authorization: Bearer quickstart-token")
"$ST" load "http://$LB/" --rate 2000 -d 8s --json "$OUT/rollout.json" > "$OUT/rollout.txt" &
LOAD=$!
for old in "$V1A:$P1A" "$V1B:$P1B"; do
  sleep 2
  start v2 serve --bind 127.0.0.1:0 --threads 1 --version-label v2 --drain-delay 1s
  curl -s "${auth[@]}" -X POST --data "$ADDR" "http://$ADMIN/backends" >/dev/null
  echo "   added v2 at $ADDR; draining v1 at ${old%:*}"
  kill -TERM "${old##*:}"; wait "${old##*:}" 2>/dev/null || true
  curl -s "${auth[@]}" -X DELETE "http://$ADMIN/backends/${old%:*}" >/dev/null
done
wait $LOAD
cat "$OUT/rollout.txt"
echo
echo "now answering: $(curl -s "http://$LB/version")"
echo "JSON run files (with HDR histograms) are in $OUT/; print one again with: $ST report $OUT/open.json"
