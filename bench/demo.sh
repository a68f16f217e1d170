#!/usr/bin/env bash
# The demo's layout on this machine (issue: `scaletest demo`, "How fast"). Only 127.0.0.1.
#
#   bash bench/demo.sh                 # max-rate with balance and with haproxy, ROUNDS=3 each
#   ONLY=lb-replicas bash bench/demo.sh
#
# max-rate: `scaletest demo --scenario max-rate --headless` (2 servers, 2 loadbots, the
#   aggregator, the rate stepping up every 6 s), once with `scaletest balance` and once with
#   haproxy (1 thread) in its place, alternating, in the same run; everything shares the
#   machine's cores, as the demo does. Reported: the highest rate each sustained with p99 under
#   10 ms and no failures, the median over rounds, and the ratio. Goal: balance ≥ 1.5× haproxy.
# lb-replicas: seed 002's experiment (30 connections against 2, 5 and 10 replicas, 30 s each);
#   the three tables are kept in OUT for BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-}
OUT=${OUT:-bench/out/demo-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
want() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }
log() { echo "[$(date +%T)] $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v haproxy >/dev/null || { echo "bench/demo.sh: needs haproxy (apt-get install haproxy)" >&2; exit 1; }
# ST names a prebuilt binary (then nothing is built).
if [ -z "${ST:-}" ]; then
  log "building (release)"
  cargo build --release -q -p scaletest || exit 1
fi
ST=${ST:-$PWD/target/release/scaletest}
RUN=$(mktemp -d)
trap 'rm -rf "$RUN"' EXIT

if want max-rate; then
  for r in $(seq "$ROUNDS"); do
    for lb in scaletest haproxy; do
      "$ST" demo --scenario max-rate --headless --balancer "$lb" --dir "$RUN/$lb" >"$OUT/max-rate-$lb-r$r.txt" 2>&1
      rate=$(grep -o 'no failures: [0-9]*' "$OUT/max-rate-$lb-r$r.txt" | grep -o '[0-9]*$')
      printf 'max-rate\tbalancer=%s\tround=%s\tsustained=%s\t%s\n' "$lb" "$r" "${rate:-0}" \
        "$(grep -o 'no failures: .*' "$OUT/max-rate-$lb-r$r.txt")" | tee -a "$OUT/results.tsv"
    done
  done
  b=$(grep 'balancer=scaletest' "$OUT/results.tsv" | grep -o 'sustained=[0-9]*' | cut -d= -f2 | median)
  h=$(grep 'balancer=haproxy' "$OUT/results.tsv" | grep -o 'sustained=[0-9]*' | cut -d= -f2 | median)
  printf 'max-rate\tmedian_balance=%s\tmedian_haproxy=%s\tratio=%s\n' "$b" "$h" \
    "$( [ "${h:-0}" != 0 ] && echo "scale=2; $b / $h" | bc || echo n/a)" | tee -a "$OUT/summary.tsv"
fi

if want lb-replicas; then
  "$ST" demo --scenario lb-replicas --headless --dir "$RUN/lb" >"$OUT/lb-replicas.txt" 2>&1
  grep '^== phase' "$OUT/lb-replicas.txt" | tee -a "$OUT/summary.tsv"
fi
log "results in $OUT"
