#!/usr/bin/env bash
# Control-plane churn (issue 4's speed goals), against the fake API server run as a process
# (kubefake's `fakeapi` example; test code, never in the binary) on CPU 1, with scaletest
# pinned to CPU 0 with one worker thread:
#   schedule  open loop at RATE lifecycles/s (one update each: 3 calls per lifecycle) for DUR
#             seconds; reports start lateness p50/p99 (goal: p99 <= 5 ms at 500/s).
#   capacity  open loop at CAP lifecycles/s (3 calls each) on one core; reports calls made, start
#             lateness, and the CPU scaletest used per call, so the calls/s one core could
#             sustain (goal: 5,000 calls/s: CAP=1700).
#   peer      closed loop, W workers, create + patch + delete, against the official Kubernetes
#             Python client doing the same (bench/api_peer.py; PEER=0 skips it): calls/s and
#             CPU per call, both on CPU 0.
# Each scenario runs ROUNDS times; the summary takes medians. Only 127.0.0.1 is used.
#
#   bash bench/api.sh                  # ROUNDS=3 DUR=20 RATE=500 CAP=1700
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-20}
RATE=${RATE:-500}
CAP=${CAP:-1700}
SCPU=${SCPU:-0}
FCPU=${FCPU:-1}
OUT=${OUT:-bench/out/api-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" >&2; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
log "building scaletest and the fake API (release)"
cargo build --release -q -p scaletest && cargo build --release -q -p kubefake --example fakeapi || exit 1
ST=$PWD/target/release/scaletest
KC="$OUT/kubeconfig"
taskset -c "$FCPU" target/release/examples/fakeapi "$KC" > "$OUT/fakeapi.log" 2>&1 &
FAKE=$!
trap 'kill $FAKE 2>/dev/null' EXIT
for _ in $(seq 100); do [ -s "$KC" ] && break; sleep 0.05; done
[ -s "$KC" ] || { log "the fake API did not start"; exit 1; }

# The peer: the official Kubernetes Python client, in a venv of its own (PyPI).
W=${W:-8}
PY=$OUT/venv/bin/python
if [ "${PEER:-1}" = 1 ]; then
  python3 -m venv "$OUT/venv" >/dev/null 2>&1 && "$OUT/venv/bin/pip" install -q kubernetes >/dev/null 2>&1 \
    || log "no Python Kubernetes client (pip install kubernetes failed): peer comparison skipped"
fi

# The 99% (or another) column of a report row: cells are split by the box drawing bar.
col() { awk -F'│' -v row="$1" -v c="$2" '$2 ~ row { gsub(/ ms| /, "", $c); print $c; exit }'; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

for r in $(seq "$ROUNDS"); do
  log "round $r: schedule at $RATE/s"
  f="$OUT/schedule-$r.txt"
  taskset -c "$SCPU" "$ST" api churn --kubeconfig "$KC" --threads 1 --rate "$RATE" -d "${DUR}s" \
    --population $((RATE * 2)) -u 1 > "$f" 2>&1
  echo "schedule $(col 'Start lateness' 4 < "$f") $(col 'Start lateness' 6 < "$f")" >> "$OUT/results"
  log "round $r: capacity at $CAP/s"
  f="$OUT/capacity-$r.txt"
  /usr/bin/time -f "cpu %U %S" taskset -c "$SCPU" "$ST" api churn --kubeconfig "$KC" --threads 1 \
    --rate "$CAP" -d "${DUR}s" --lifetime 1s -u 1 > "$f" 2>&1
  n=$(grep -o '^[0-9,]* API calls' "$f" | tr -d , | cut -d' ' -f1)
  failed=$(grep -o '[0-9,]* failed' "$f" | tr -d , | cut -d' ' -f1)
  cpu=$(awk '/^cpu / { print $2 + $3 }' "$f")
  echo "capacity $n $cpu $(col 'Start lateness' 6 < "$f") $failed" >> "$OUT/results"
  if [ -x "$PY" ]; then
    log "round $r: closed loop, $W workers: the Python client, then scaletest"
    taskset -c "$SCPU" "$PY" bench/api_peer.py "$KC" "$W" "$DUR" > "$OUT/peer-$r.txt" 2>&1
    echo "peer python $(cat "$OUT/peer-$r.txt")" >> "$OUT/results"
    f="$OUT/closed-$r.txt"
    /usr/bin/time -f "cpu %U %S" taskset -c "$SCPU" "$ST" api churn --kubeconfig "$KC" --threads 1 \
      -w "$W" -d "${DUR}s" -u 1 --size 100 > "$f" 2>&1
    n=$(grep -o '^[0-9,]* API calls' "$f" | tr -d , | cut -d' ' -f1)
    secs=$(sed -n 's/.*API calls in \([0-9.]*\)s.*/\1/p' "$f")
    echo "peer scaletest $n $secs $(awk '/^cpu / { print $2 + $3 }' "$f")" >> "$OUT/results"
  fi
done

echo
echo "Open loop at $RATE lifecycles/s ($((RATE * 3)) calls/s), start lateness (ms), median of $ROUNDS:"
echo "  p50 $(awk '$1 == "schedule" { print $2 }' "$OUT/results" | median)   p99 $(awk '$1 == "schedule" { print $3 }' "$OUT/results" | median)"
echo "Open loop at $CAP lifecycles/s ($((CAP * 3)) calls/s asked), median of $ROUNDS:"
awk '$1 == "capacity" { printf "%d %.1f %.0f %s %s\n", $2, $3 / $2 * 1e6, $2 / $3, $4, $5 }' "$OUT/results" \
  > "$OUT/capacity"
echo "  calls made         $(cut -d' ' -f1 "$OUT/capacity" | median) (scheduled: $((CAP * 3 * DUR)) on average)"
echo "  failed lifecycles  $(cut -d' ' -f5 "$OUT/capacity" | median)"
echo "  start lateness p99 $(cut -d' ' -f4 "$OUT/capacity" | median) ms"
echo "  CPU µs per call    $(cut -d' ' -f2 "$OUT/capacity" | median)  (scaletest, all threads, user + system)"
echo "  calls per CPU-second $(cut -d' ' -f3 "$OUT/capacity" | median)"
if grep -q '^peer' "$OUT/results"; then
  echo "Closed loop, $W workers, create + patch + delete, client on one core, median of $ROUNDS:"
  for tool in python scaletest; do
    awk -v t=$tool '$1 == "peer" && $2 == t { printf "%.0f %.1f\n", $3 / $4, $5 / $3 * 1e6 }' "$OUT/results" > "$OUT/peer-$tool"
    echo "  $tool: calls/s $(cut -d' ' -f1 "$OUT/peer-$tool" | median), CPU µs per call $(cut -d' ' -f2 "$OUT/peer-$tool" | median)"
  done
fi
echo "Raw reports in $OUT"
