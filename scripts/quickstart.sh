#!/usr/bin/env bash
# A complete load test on this machine with no other set-up: builds scaletest, starts a local
# nginx target on 127.0.0.1 (installed from Debian if missing), runs a closed-loop and an
# open-loop test against it, and stops nginx. Results go to ./quickstart-out/.
# (When `scaletest demo` exists it takes this script's place.)
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-5s}
OUT=${OUT:-quickstart-out}
mkdir -p "$OUT"

if ! command -v cargo >/dev/null; then
  # shellcheck disable=SC1091
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
echo "== building scaletest (release)"
cargo build --release -q -p scaletest
ST=target/release/scaletest

if ! command -v nginx >/dev/null; then
  echo "== installing nginx from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi

RUN=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$RUN/nginx.conf" <<CONF
worker_processes 1;
pid $RUN/nginx.pid;
error_log $RUN/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  client_body_temp_path $RUN; proxy_temp_path $RUN; fastcgi_temp_path $RUN; uwsgi_temp_path $RUN; scgi_temp_path $RUN;
  server { listen 127.0.0.1:$PORT backlog=4096; location / { return 200 "hello, world\n"; } }
}
CONF
nginx -p "$RUN" -c "$RUN/nginx.conf" -g 'daemon off;' &
NGINX=$!
trap 'kill $NGINX 2>/dev/null; wait $NGINX 2>/dev/null; rm -rf "$RUN"' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT/"

echo
echo "== closed loop: 50 connections for $DUR against nginx at $URL"
"$ST" load "$URL" -c 50 -d "$DUR" --json "$OUT/closed.json"
echo
echo "== open loop: 20,000 req/s with Poisson arrivals for $DUR"
"$ST" load "$URL" --rate 20000 --arrival poisson -d "$DUR" --percentiles --json "$OUT/open.json"
echo
echo "JSON run files (with HDR histograms): $OUT/closed.json $OUT/open.json"
echo "Print one again with: $ST report $OUT/open.json --percentiles"
