#!/usr/bin/env bash
# Hollow nodes: the memory and CPU of `scaletest nodes` at SIZES nodes against the fake API
# server (a separate process), the API traffic per node from the fake's request log, and issue
# 21's done-when checks.
#
#   bash bench/nodes.sh                         # SIZES="100 1000 5000", WATCH=per-node
#   SIZES=5000 WATCH=shared STEADY=60 bash bench/nodes.sh
#   SIZES="1000 5000" WARM=180 STEADY=120 bash bench/nodes.sh    # issue 21's checks
#
# Per size: the fake on CPU $FCPU, `scaletest nodes` (release, default flags; $NODES_FLAGS adds
# some) on CPU $NCPU (pinning needs taskset; with one CPU its default is one worker thread).
# After registration and a $WARM-second warm-up, $STEADY seconds are measured: the CPU of both
# processes from /proc/PID/stat (utime+stime; cores = ticks / CLK_TCK / seconds), the nodes'
# VmRSS and VmHWM from /proc/PID/status, and the fake's request log (FAKEAPI_CALLS, written
# every second) at both ends. From the nodes' start, the request log is sampled every second
# ($OUT/leases-N.tsv): "ramp" is the first second after which the last 10 s renewed at least
# 90 % of N/10 leases a second (a kubelet renews every 10 s), or "-" when that never happened.
# Then, at PODS_AT nodes (default 1000): PODS pods (default 200) are created unbound, as a
# 200-replica Deployment's ReplicaSet would create them (the fake runs no controller or
# scheduler), and bound round-robin to the hollow nodes with pods/NAME/binding, 16 bindings
# in flight; a watch on the namespace (opened before the first create) times each pod from its
# binding's answer to the first event showing it Running and Ready ("bound → Running"); the
# nodes' own report (pod_startup: create → seen running by their startup informer) is printed
# too. Then the nodes are stopped (SIGINT), `scaletest nodes --cleanup` runs, and the hollow
# Nodes (label scaletest.dev/hollow) and the Leases in kube-node-lease held by a hollow node
# left on the fake are counted. `uptime` before and after each size says what else ran.
# Only 127.0.0.1 is used; every process is stopped when its size is done (its PIDs, not by
# name), each wait is bounded. Raw outputs go to $OUT.
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
PODS=${PODS:-200}
PODS_AT=${PODS_AT:-1000}
NODES_FLAGS=${NODES_FLAGS:-}
OUT=${OUT:-bench/out/nodes-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" >&2; }
cargo build --release -q -p scaletest --bin scaletest && cargo build --release -q -p kubefake --example fakeapi || exit 1
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/scaletest
FAKE=$TARGET/release/examples/fakeapi
TCK=$(getconf CLK_TCK)
# The interpreter itself: pyenv's shim runs a few bash scripts per call.
PY=$(python3 -c 'import sys; print(sys.executable)')
python3() { "$PY" "$@"; }
# `exec`: run in the background (`pin … &`), the process itself gets $!, for /proc and signals.
pin() { if command -v taskset >/dev/null; then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
calls() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({k:v for k,v in d.items() if " in " not in k}))' "$1"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# Stop PID with SIGINT (then SIGKILL after 30 s): bounded.
stop() {
  kill -INT "$1" 2>/dev/null
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}

# The pods check: create PODS pods unbound, bind them round-robin to the N hollow nodes, time
# each from its binding to Running and Ready as a watch on the namespace sees it. Bounded: 60 s.
pods_check() {
  python3 - "$@" <<'PY'
import http.client, json, math, sys, threading, time, urllib.parse, concurrent.futures as cf
url, n, pods, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlsplit(url)
assert u.hostname.startswith("127."), u.hostname
ns = "deploy200"
def conn():
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    kw = {}
    if u.scheme == "https":
        import ssl
        kw["context"] = ssl._create_unverified_context()
    return cls(u.hostname, u.port, timeout=30, **kw)
def call(c, method, path, body=None):
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json", "Accept": "application/json"})
    r = c.getresponse(); data = r.read()
    return r.status, (json.loads(data) if data else None)
c = conn()
call(c, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
st, lst = call(c, "GET", f"/api/v1/namespaces/{ns}/pods")
rv = lst["metadata"]["resourceVersion"]
bound, running, created = {}, {}, {}
lock = threading.Lock()
done = threading.Event()
def ready(p):
    s = p.get("status") or {}
    return s.get("phase") == "Running" and any(
        x.get("type") == "Ready" and x.get("status") == "True" for x in s.get("conditions") or [])
def watch():
    w = conn()
    w.request("GET", f"/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={rv}&timeoutSeconds=70",
              headers={"Accept": "application/json"})
    r = w.getresponse()
    while not done.is_set():
        line = r.readline()
        if not line:
            break
        if not line.strip():
            continue
        now = time.time()
        ev = json.loads(line); p = ev.get("object") or {}
        name = (p.get("metadata") or {}).get("name")
        if ev.get("type") in ("ADDED", "MODIFIED") and name and ready(p):
            with lock:
                running.setdefault(name, now)
                if len(running) >= pods:
                    done.set()
t = threading.Thread(target=watch, daemon=True); t.start()
time.sleep(0.5)
names = [f"web-{i:04d}" for i in range(pods)]
def create(name):
    cc = conn()
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"},
                         "annotations": {"scaletest.dev/sent-at": str(time.time_ns())}},
            "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9"}]}}
    st, _ = call(cc, "POST", f"/api/v1/namespaces/{ns}/pods", body)
    created[name] = time.time()
    return st
def bind(i):
    name = names[i]; cc = conn()
    body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": f"{prefix}{i % n}"}}
    st, _ = call(cc, "POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", body)
    with lock:
        bound[name] = time.time()
    return st
with cf.ThreadPoolExecutor(16) as ex:
    cst = list(ex.map(create, names))
    t0 = time.time()
    bst = list(ex.map(bind, range(pods)))
t1 = time.time()
done.wait(60)
done.set()
lat = sorted(running[k] - bound[k] for k in running if k in bound)
def pct(q):  # nearest rank
    return lat[max(1, math.ceil(q * len(lat))) - 1] if lat else float("nan")
within = sum(1 for x in lat if x <= 10)
last = max(running.values()) - t1 if len(running) >= pods else float("nan")
print(f"{pods}\t{sum(1 for s in cst if s == 201)}\t{sum(1 for s in bst if s == 201)}\t{t1 - t0:.2f}\t"
      f"{len(running)}\t{pct(.5):.2f}\t{pct(.9):.2f}\t{pct(.99):.2f}\t{(lat[-1] if lat else float('nan')):.2f}\t"
      f"{within}\t{last:.2f}")
PY
}

# What --cleanup left: hollow Nodes, and Leases held by a hollow node (by name).
leftovers() {
  python3 - "$1" <<'PY'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); assert u.hostname.startswith("127.")
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
def get(p):
    c.request("GET", p, headers={"Accept": "application/json"}); r = c.getresponse(); return json.loads(r.read())
nodes = get("/api/v1/nodes")["items"]
hollow = [x for x in nodes if "scaletest.dev/hollow" in (x["metadata"].get("labels") or {})]
leases = get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")["items"]
held = [l for l in leases if (l.get("spec") or {}).get("holderIdentity", "").startswith("hollow-node-")]
print(f"{len(nodes)}\t{len(hollow)}\t{len(leases)}\t{len(held)}")
PY
}

printf "nodes\twatch\trss_mib\thwm_mib\tkib_per_node\tcpu_cores\tfake_cpu_cores\tlease_updates_per_s\tramp_s\tlease_updates_per_s_at_180s\tload_before\tload_after\n" > "$OUT/results.tsv"
printf "nodes\tpods\tcreated\tbound\tbinding_s\trunning\tp50_s\tp90_s\tp99_s\tmax_s\twithin_10s\tlast_bound_to_all_s\n" > "$OUT/pods.tsv"
printf "nodes\tcleanup_said\tnodes_left\thollow_nodes_left\tleases_left\thollow_leases_left\n" > "$OUT/cleanup.tsv"
for N in $SIZES; do
  L0=$(load)
  log "$N nodes; load average before: $L0"
  KC="$OUT/kubeconfig-$N"
  CALLS="$OUT/calls-$N.json"
  # Bookmarks once a minute, as the API server sends them (the fake's default is for tests).
  FAKEAPI_BOOKMARK_S=60 FAKEAPI_CALLS="$CALLS" pin "$FCPU" "$FAKE" "$KC" > "$OUT/fake-$N.log" 2>&1 &
  FPID=$!
  for _ in $(seq 100); do [ -s "$KC" ] && [ -s "$CALLS" ] && break; sleep 0.1; done
  URL=$(awk '$1 == "server:" {print $2}' "$KC")
  # shellcheck disable=SC2086
  pin "$NCPU" "$BIN" nodes --nodes "$N" --kubeconfig "$KC" $NODES_FLAGS \
      --json "$OUT/nodes-$N.json" > "$OUT/nodes-$N.out" 2> "$OUT/nodes-$N.err" &
  NPID=$!
  START=$(date +%s.%N)
  # The lease ramp: the request log's lease updates every second from the nodes' start, until
  # the nodes stop (at most 30 minutes).
  ( for _ in $(seq 1800); do
      kill -0 $NPID 2>/dev/null || break
      U=$(grep -o '"update leases":[0-9]*' "$CALLS" 2>/dev/null | cut -d: -f2)
      printf "%s\t%s\n" "$(date +%s.%N | awk -v s="$START" '{printf "%.1f", $1 - s}')" "${U:-0}"
      sleep 1
    done ) > "$OUT/leases-$N.tsv" &
  SPID=$!
  for _ in $(seq 3000); do grep -q "registered;" "$OUT/nodes-$N.err" 2>/dev/null && break; kill -0 $NPID 2>/dev/null || break; sleep 0.1; done
  log "$N nodes registered after $(python3 -c "import time; print(f'{time.time() - $START:.1f}')") s; warming up ${WARM}s"
  sleep "$WARM"
  T0=$(ticks $NPID); F0=$(ticks $FPID); C0=$(calls "$CALLS"); S0=$(date +%s.%N)
  sleep "$STEADY"
  T1=$(ticks $NPID); F1=$(ticks $FPID); C1=$(calls "$CALLS"); S1=$(date +%s.%N)
  RSS=$(kib $NPID VmRSS); HWM=$(kib $NPID VmHWM)
  if [ "$N" = "$PODS_AT" ]; then
    log "$N nodes: $PODS pods created, then bound"
    P=$(pods_check "$URL" "$N" "$PODS" hollow-node-)
    printf "%s\t%s\n" "$N" "$P" >> "$OUT/pods.tsv"
    log "pods: $P"
    sleep 2   # the nodes' startup informer sees the last pods
  fi
  stop $NPID
  wait $SPID 2>/dev/null
  CL=$(timeout 300 "$BIN" nodes --cleanup --kubeconfig "$KC" 2> "$OUT/cleanup-$N.err")
  printf "%s\t%s\t%s\n" "$N" "$CL" "$(leftovers "$URL")" >> "$OUT/cleanup.tsv"
  log "cleanup: $CL; left (nodes, hollow nodes, leases, hollow leases): $(tail -1 "$OUT/cleanup.tsv" | cut -f3-)"
  stop $FPID
  L1=$(load)
  python3 - "$N" "$WATCH" "$RSS" "$HWM" "$T0" "$T1" "$S0" "$S1" "$TCK" "$C0" "$C1" "$F0" "$F1" "$OUT/leases-$N.tsv" "$L0" "$L1" >> "$OUT/results.tsv" <<'PY'
import json, sys
n, watch, rss, hwm, t0, t1, s0, s1, tck = sys.argv[1:10]
c0, c1 = json.loads(sys.argv[10]), json.loads(sys.argv[11])
f0, f1, ramp_file, l0, l1 = sys.argv[12:17]
n = int(n); secs = float(s1) - float(s0)
cpu = (int(t1) - int(t0)) / int(tck) / secs
fcpu = (int(f1) - int(f0)) / int(tck) / secs
upd = (c1.get("update leases", 0) - c0.get("update leases", 0)) / secs
samples = [tuple(map(float, l.split("\t"))) for l in open(ramp_file) if l.count("\t") == 1]
ramp, at180 = "-", "-"
for i, (t, c) in enumerate(samples):
    back = [s for s in samples[:i] if t - s[0] >= 10]
    if not back:
        continue
    bt, bc = back[-1]
    rate = (c - bc) / (t - bt)
    if ramp == "-" and rate >= 0.9 * n / 10:
        ramp = f"{t:.0f}"
    if at180 == "-" and t >= 180:
        at180 = f"{rate:.1f}"
print(f"{n}\t{watch}\t{int(rss)/1024:.1f}\t{int(hwm)/1024:.1f}\t{int(rss)/n:.1f}\t{cpu:.3f}\t{fcpu:.3f}\t{upd:.1f}\t{ramp}\t{at180}\t{l0}\t{l1}")
mins = secs / 60
# To the script's stderr, appended (opening /dev/stderr with "w" truncated a redirected log).
for k in sorted(c1):
    d = c1[k] - c0.get(k, 0)
    if d:
        sys.stderr.write(f"  {n} nodes: {k:<32} {d / n / mins:8.3f} per node per minute\n")
PY
  log "$(tail -1 "$OUT/results.tsv")"
  grep -E "pod_startup|scheduled → running|create → scheduled|running → seen|Latency|waited for" "$OUT/nodes-$N.out" >&2
done
column -t -s $'\t' "$OUT/results.tsv"
column -t -s $'\t' "$OUT/pods.tsv"
column -t -s $'\t' "$OUT/cleanup.tsv"
