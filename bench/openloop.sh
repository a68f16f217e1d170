#!/usr/bin/env bash
# Open-loop cost: scaletest load against oha, in the same run (issue 24). Only 127.0.0.1.
#
#   bash bench/openloop.sh                       # RATES="1000 10000 50000" ROUNDS=5 DUR=10
#   ST=target/release/scaletest RATES=10000 ROUNDS=3 bash bench/openloop.sh
#
# Debian nginx (1 worker, access_log off, stub_status) pinned to CPU 0; each generator pinned
# to CPU 1 in turn (the order alternates round by round): `scaletest load URL --rate R -d DUR`
# and `oha -z DUR -q R --latency-correction --no-tui` (oha OHA_VERSION, installed here with
# `cargo install oha --locked` into bench/.tools when missing), both with 50 connections.
# Per run: the generator's CPU (user + sys, /usr/bin/time) per request nginx counted (its
# stub_status before and after), the achieved rate (nginx's count / DUR) against R, and the
# host's steal over the run (a run with seconds of it is charged CPU it did not get: the
# medians count only runs with at most STEAL_MAX s, default 0.5, saying how many).
# Each round also runs scaletest's closed loop (-c 50, as fast as it goes): what our
# open loop's cost is compared with.
# The summary gives medians per rate, the ratio scaletest / oha, and open / closed loop.
#
# FLOOR=1 adds, in the same rounds, oha's closed loop (-c 50) and bench/floor.c (built here
# with cc): a minimal one-thread C generator, open loop with our design (a 500 µs tick sends
# every request due) and closed loop, no latency recording. Its open / closed ratio is what
# this machine charges an open loop of that design with next to no code; ours is compared with it.
set -uo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-10}
RATES=${RATES:-"1000 10000 50000"}
OHA_VERSION=${OHA_VERSION:-1.16.0}
STEAL_MAX=${STEAL_MAX:-0.5}
SCPU=${SCPU:-0}
GCPU=${GCPU:-1}
OUT=${OUT:-bench/out/openloop-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/raw"
log() { echo "[$(date +%T)] $*" >&2; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; }
OHA=${OHA:-$(command -v oha || true)}
if [ -z "$OHA" ]; then
  if [ ! -x bench/.tools/bin/oha ]; then
    log "installing oha $OHA_VERSION (cargo install --locked)"
    cargo install oha --version "$OHA_VERSION" --locked --root bench/.tools -q || exit 1
  fi
  OHA=$PWD/bench/.tools/bin/oha
fi
if [ -z "${ST:-}" ]; then
  log "building scaletest (release)"
  cargo build --release -q -p scaletest || exit 1
fi
ST=${ST:-$PWD/target/release/scaletest}

RUN=$(mktemp -d)
FLOOR=${FLOOR:-0}
if [ "$FLOOR" = 1 ]; then
  cc -O2 -o "$RUN/floor" bench/floor.c || exit 1
fi
PORT=18480
. bench/nginx.sh
nginx_stub "$RUN" "$PORT" "$SCPU"
trap 'kill $NGINX 2>/dev/null; wait 2>/dev/null; rm -rf "$RUN"' EXIT

URL=http://127.0.0.1:$PORT/
RESULTS=$OUT/results.tsv
: > "$RESULTS"
# measure TOOL RATE ROUND cmd...: one run, one line of results.tsv.
measure() {
  local tool=$1 rate=$2 r=$3; shift 3
  local name="$tool-$rate-r$r" before after s0 s1
  sleep 1
  before=$(served "$PORT"); s0=$(steal)
  taskset -c "$GCPU" /usr/bin/time -f '%e %U %S %M' -o "$OUT/raw/$name.time" "$@" >"$OUT/raw/$name.out" 2>"$OUT/raw/$name.err"
  after=$(served "$PORT"); s1=$(steal)
  local wall user sys rss; read -r wall user sys rss < "$OUT/raw/$name.time"
  local n=$((after - before - 1))
  local stolen; stolen=$(echo "$s1 - $s0" | bc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$rate" "$r" "$n" "$(echo "$user + $sys" | bc)" "$sys" "$rss" "$stolen" >> "$RESULTS"
  log "  $name: $n requests, cpu $(echo "$user + $sys" | bc) s (sys $sys), rss ${rss} KiB, steal $stolen s"
}

for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS"
  if [ $((r % 2)) -eq 1 ]; then order="oha scaletest"; else order="scaletest oha"; fi
  for rate in $RATES; do
    for tool in $order; do
      if [ "$tool" = oha ]; then
        measure oha "$rate" "$r" "$OHA" -z "${DUR}s" -q "$rate" -c 50 --latency-correction --no-tui "$URL"
      else
        measure scaletest "$rate" "$r" "$ST" load "$URL" --rate "$rate" -c 50 -d "${DUR}s"
      fi
    done
  done
  # Our own closed loop (as fast as it goes, 50 connections): the floor an open loop's cost
  # per request is compared with (rate 0 in results.tsv).
  measure scaletest 0 "$r" "$ST" load "$URL" -c 50 -d "${DUR}s"
  if [ "$FLOOR" = 1 ]; then
    for rate in $RATES; do measure floor "$rate" "$r" "$RUN/floor" "$PORT" "$rate" 50 "$DUR"; done
    measure floor 0 "$r" "$RUN/floor" "$PORT" 0 50 "$DUR"
    measure oha 0 "$r" "$OHA" -z "${DUR}s" -c 50 --no-tui "$URL"
  fi
done

python3 - "$RESULTS" "$DUR" "$STEAL_MAX" <<'PY' | tee "$OUT/summary.md"
import sys, statistics as st
rows = [l.split('\t') for l in open(sys.argv[1]) if l.strip()]
dur, steal_max = float(sys.argv[2]), float(sys.argv[3])
by = {}
for tool, rate, r, n, cpu, sys_, rss, stolen in rows:
    n = int(n)
    by.setdefault((int(rate), tool), []).append((1e6 * float(cpu) / n if n else 0, n / dur, float(stolen), int(rss)))
# Medians over the runs with at most STEAL_MAX s of steal (all of them if none is that quiet).
quiet = {k: [x for x in v if x[2] <= steal_max] or v for k, v in by.items()}
print(f"| rate (req/s) | tool | runs (steal ≤ {steal_max} s) | CPU µs/request (median of those) | round by round (steal s) | achieved (median, nginx) | RSS KiB |")
print("|---:|---|---:|---:|---|---:|---:|")
for (rate, tool), v in sorted(by.items()):
    q = quiet[(rate, tool)]
    got = st.median(x[1] for x in v)
    kept = f"({100 * got / rate:.1f} %)" if rate else "(closed loop)"
    print(f"| {f'{rate:,}' if rate else 'closed'} | {tool} | {len(q)} of {len(v)} | {st.median(x[0] for x in q):.1f} | "
          f"{', '.join(f'{x[0]:.1f} ({x[2]:.2f})' for x in v)} | {got:,.0f} {kept} | "
          f"{st.median(x[3] for x in v):,.0f} |")
print()
print(f"Steal over all runs: {sum(x[2] for v in by.values() for x in v):.2f} s.")
print()
med = lambda k: st.median(x[0] for x in quiet[k])
for rate in sorted(k for k in {k[0] for k in by} if k):
    s, o = (rate, 'scaletest'), (rate, 'oha')
    parts = [f"scaletest / oha CPU per request = {med(s) / med(o):.2f}×"] if s in by and o in by else []
    # Each tool's open loop against its own closed loop (the floor's: what the machine charges).
    for tool in ('scaletest', 'oha', 'floor'):
        if (rate, tool) in by and (0, tool) in by:
            parts.append(f"{tool} open / closed loop = {med((rate, tool)) / med((0, tool)):.2f}×")
    print(f"- {rate:,} req/s: " + "; ".join(parts))
PY
