#!/usr/bin/env bash
# HTTP/2 over TLS block throughput (seed 004's go_httperf): `scaletest load` against h2load
# fetching the same URL from the same `scaletest serve`, in the same run.
#
#   bash bench/blocks.sh                     # ROUNDS=3 DUR=10
#   ROUNDS=5 DUR=20 bash bench/blocks.sh
#
# The server (`scaletest serve --tls-self-signed`, one thread) is pinned to CPU $SCPU, each
# client to CPU $GCPU, one thread; both clients open $CONNS connections × $STREAMS streams and
# fetch https://127.0.0.1:PORT/blocks?size=16384&n=1000&periodMS=0 (16 MB a response) for DUR
# seconds. Tools alternate round by round; the summary takes medians. Per run: body bytes/s
# received (scaletest: its JSON's bytes over the elapsed time, response heads included; h2load:
# its "traffic" total over "finished in"), and the client's user+sys CPU (/usr/bin/time) per
# GB received. Only 127.0.0.1 is used; every run stops by itself.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
CONNS=${CONNS:-8}
STREAMS=${STREAMS:-10}
SCPU=${SCPU:-0}
GCPU=${GCPU:-1}
PORT=${PORT:-18643}
OUT=${OUT:-bench/out/blocks-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" >&2; }

command -v h2load >/dev/null || {
  log "installing nghttp2-client from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null
}
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if [ -z "${ST:-}" ]; then
  log "building scaletest (release)"
  nice -n 19 cargo build --release -q -p scaletest || exit 1
  ST=$PWD/target/release/scaletest
fi

taskset -c "$SCPU" "$ST" serve --bind "127.0.0.1:$PORT" --threads 1 --tls-self-signed \
  > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q listening "$OUT/serve.log" && break; sleep 0.1; done
URL="https://127.0.0.1:$PORT/blocks?size=16384&n=1000&periodMS=0"

# CPU seconds (user+sys) from /usr/bin/time's last line "%U %S".
cpu() { tail -1 "$1" | awk '{print $1 + $2}'; }

RESULTS="$OUT/results.tsv"
: > "$RESULTS"
for r in $(seq "$ROUNDS"); do
  f="$OUT/scaletest-$r"
  log "round $r: scaletest load"
  /usr/bin/time -f '%U %S' -o "$f.time" taskset -c "$GCPU" "$ST" load "$URL" --http2 -k \
    -c "$CONNS" --streams "$STREAMS" -t 1 -d "${DUR}s" --json "$f.json" > "$f.txt" 2>&1
  read -r bps total < <(python3 -c "import json; r=json.load(open('$f.json')); print(r['total']['bytes']/r['elapsed_s'], r['total']['bytes'])")
  echo -e "scaletest\t$r\t$bps\t$(cpu "$f.time")\t$total" >> "$RESULTS"

  f="$OUT/h2load-$r"
  log "round $r: h2load"
  /usr/bin/time -f '%U %S' -o "$f.time" taskset -c "$GCPU" h2load -c "$CONNS" -m "$STREAMS" \
    -t 1 -D "$DUR" "$URL" > "$f.txt" 2>&1
  # "finished in 10.00s, 5.00 req/s, 82.00MB/s" and "traffic: 820.12MB (859963440) total, ..."
  read -r bps total < <(python3 - "$f.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
secs = float(re.search(r"finished in ([0-9.]+)s", t).group(1))
total = int(re.search(r"traffic: \S+ \((\d+)\) total", t).group(1))
print(total / secs, total)
PY
)
  echo -e "h2load\t$r\t$bps\t$(cpu "$f.time")\t$total" >> "$RESULTS"
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
by = {}
for tool, r, bps, cpu, total in rows:
    bps, cpu, gb = float(bps), float(cpu), float(total) / 1e9
    by.setdefault(tool, []).append((bps, cpu / gb if gb else float("nan")))
    print(f"{tool:9} round {r}: {bps / 1e6:8.1f} MB/s, {cpu:5.2f} s CPU, {cpu / gb:6.3f} CPU s/GB")
med = {t: (statistics.median(b for b, _ in v), statistics.median(c for _, c in v)) for t, v in by.items()}
for t, (b, c) in med.items():
    print(f"median {t:9}: {b / 1e6:8.1f} MB/s, {c:6.3f} CPU s/GB")
if "scaletest" in med and "h2load" in med:
    print(f"scaletest/h2load: throughput {med['scaletest'][0] / med['h2load'][0]:.3f}x, "
          f"CPU per GB {med['scaletest'][1] / med['h2load'][1]:.3f}x")
PY
