#!/usr/bin/env bash
# Build the scaletest container image WITHOUT a Docker engine, then check it.
#
#   scripts/image.sh [OUT_DIR]          (default: target/image)
#
# 1. A statically linked binary: glibc with -C target-feature=+crt-static, built for the
#    explicit host target so the flag does not reach build scripts and proc macros.
#    (glibc >= 2.34 has its files and dns NSS modules inside libc, so name resolution works
#    in a static binary with the /etc/resolv.conf Kubernetes mounts into every container:
#    checked below.)
# 2. A FROM-scratch OCI image holding only /scaletest, built with umoci (unprivileged, no
#    daemon): entrypoint /scaletest, user 65532, tag scaletest:VERSION.
# 3. Checks: unpack the image and run `scaletest --version` from the unpacked root file
#    system; Service names resolve inside it as in a pod (/etc/hosts and DNS through the
#    search list, with a DNS responder in a network namespace of its own: needs root or
#    unprivileged user namespaces, python3); `skopeo inspect` the OCI archive (architecture,
#    entrypoint, user, one layer).
#
# Outputs in OUT_DIR: scaletest-oci.tar (OCI archive) and scaletest-docker.tar (docker-archive,
# for `kind load image-archive` or `docker load`).
#
# PROFILE selects the cargo profile: `image-check` (default: no LTO, for CI's time budget) or
# `release` (what to publish). Tools: cargo, umoci, skopeo (Debian packages; installed here
# with apt-get when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/image}
PROFILE=${PROFILE:-image-check}
TARGET=${TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TAG="scaletest:${VERSION}"

need() {
  if ! command -v "$1" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq "$1" >/dev/null
    else
      echo "image.sh: $1 is not installed (Debian: apt-get install $1)" >&2
      exit 2
    fi
  fi
}
need umoci
need skopeo

echo "== static binary ($PROFILE, $TARGET)"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  nice -n 19 cargo build --locked --profile "$PROFILE" --target "$TARGET" -p scaletest
dir=$PROFILE
[ "$PROFILE" = dev ] && dir=debug
BIN="${CARGO_TARGET_DIR:-target}/$TARGET/$dir/scaletest"
if ldd "$BIN" 2>&1 | grep -q '=>'; then
  echo "image.sh: $BIN is dynamically linked:" >&2
  ldd "$BIN" >&2
  exit 1
fi

echo "== OCI image $TAG (umoci, FROM scratch)"
rm -rf "$OUT"
mkdir -p "$OUT"
LAYOUT="$OUT/oci"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$VERSION"
umoci unpack --rootless --image "$LAYOUT:$VERSION" "$OUT/bundle" >/dev/null
install -m 0755 "$BIN" "$OUT/bundle/rootfs/scaletest"
umoci repack --image "$LAYOUT:$VERSION" "$OUT/bundle"
umoci config --image "$LAYOUT:$VERSION" \
  --os linux --architecture amd64 \
  --config.entrypoint /scaletest --config.cmd --help \
  --config.user 65532:65532 \
  --config.exposedports 8080/tcp --config.exposedports 8089/tcp \
  --config.label "org.opencontainers.image.title=scaletest" \
  --config.label "org.opencontainers.image.version=$VERSION" \
  --config.label "org.opencontainers.image.source=Dockerfile-free build: scripts/image.sh"
umoci gc --layout "$LAYOUT"
rm -rf "$OUT/bundle"
tar -C "$LAYOUT" -cf "$OUT/scaletest-oci.tar" .
skopeo copy --quiet "oci:$LAYOUT:$VERSION" "docker-archive:$OUT/scaletest-docker.tar:$TAG"

echo "== check: unpack and run --version from the root file system"
umoci unpack --rootless --image "$LAYOUT:$VERSION" "$OUT/check" >/dev/null
files=$(cd "$OUT/check/rootfs" && find . -mindepth 1 | sort | tr '\n' ' ')
if [ "$files" != "./scaletest " ]; then
  echo "image.sh: the root file system should hold only /scaletest, it holds: $files" >&2
  exit 1
fi
got=$(env -i "$OUT/check/rootfs/scaletest" --version)
want="scaletest $VERSION"
if [ "$got" != "$want" ]; then
  echo "image.sh: --version printed '$got', want '$want'" >&2
  exit 1
fi
echo "$got"

echo "== check: Service names resolve in the image as in a pod (/etc/hosts, DNS search list)"
# Kubernetes mounts /etc/resolv.conf and /etc/hosts into every container and nothing else: no
# NSS modules, no nsswitch.conf. In a network namespace of its own (nothing leaves it, port 53
# is free): a DNS responder on 127.0.0.1 that knows only the Services' full names, and `scaletest
# serve`. The image's binary, chrooted into the unpacked root with those two files added (as
# kubelet writes them for a ClusterFirst pod), runs the pods' data path by their short Service
# names (expanded through the search list, as in a pod): an aggregator whose target is
# serve.NS.svc and a bot that finds it at aggregate.NS.svc and sends the load; then `load` by a
# name only /etc/hosts has, and by a name nobody knows (one line, non-zero, at once).
resolve_inside() {
  set -euo pipefail
  local root=$1 userspec=$2 scripts=$3 i out
  # Global, not local: the EXIT trap runs after this function has returned.
  tmp=$(mktemp -d)
  pids=()
  trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
  python3 "$scripts/dns-responder.py" 127.0.0.1 \
    aggregate.scaletest-demo.svc.cluster.local=127.0.0.1 \
    serve.scaletest-demo.svc.cluster.local=127.0.0.1 >"$tmp/dns.out" 2>"$tmp/dns.log" &
  pids+=($!)
  "$root/scaletest" serve --bind 127.0.0.1:8080 --drain-delay 0s >"$tmp/serve.log" 2>&1 &
  pids+=($!)
  # -k: a bot that never reached its aggregator does not end on the first SIGTERM.
  in_image() { timeout -k 2 20 chroot $userspec "$root" /scaletest "$@"; }
  fail() {
    echo "image.sh: $*" >&2
    tail -n 5 "$tmp"/*.log >&2
    exit 1
  }
  for i in $(seq 100); do
    if grep -q ready "$tmp/dns.out" && (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then break; fi
    [ "$i" = 100 ] && fail "the DNS responder or serve did not start"
    sleep 0.1
  done
  echo check-token >"$root/run/token"
  in_image aggregate http://serve.scaletest-demo.svc:8080/ --rate 100 --run-for 2s \
    --token-file /run/token --out /run/out >"$tmp/aggregate.log" 2>&1 &
  pids+=($!)
  local agg=$!
  if ! out=$(in_image bot --aggregator http://aggregate.scaletest-demo.svc:8089 \
    --token-file /run/token --name check --exit-when-finished 2>&1); then
    fail "bot --aggregator http://aggregate.scaletest-demo.svc:8089 from inside the image: $out"
  fi
  wait "$agg" || fail "aggregate http://serve.scaletest-demo.svc:8080/ from inside the image failed"
  grep -q '^status codes: 200: [0-9]*$' "$tmp/aggregate.log" \
    || fail "the bot's load did not reach serve.scaletest-demo.svc"
  grep '^status codes' "$tmp/aggregate.log" | sed 's/^/aggregate + bot by DNS names: /'
  if ! out=$(in_image load http://serve-alias:8080/ -n 20 -c 2 2>&1) \
    || ! grep -q '^status codes: 200: 20$' <<<"$out"; then
    fail "load http://serve-alias:8080/ (an /etc/hosts name) from inside the image: $out"
  fi
  echo "load by an /etc/hosts name: status codes: 200: 20"
  if out=$(in_image load http://nowhere.scaletest-demo.svc:8080/ -n 1 2>&1); then
    fail "a name nobody knows loaded: $out"
  fi
  echo "a name nobody knows: $out"
}
root="$OUT/check/rootfs"
mkdir -p "$root/etc" "$root/run"
printf '%s\n' 'search scaletest-demo.svc.cluster.local svc.cluster.local cluster.local' \
  'nameserver 127.0.0.1' 'options ndots:5' >"$root/etc/resolv.conf"
printf '%s\n' '# Kubernetes-managed hosts file.' '127.0.0.1	localhost' \
  '::1	localhost ip6-localhost ip6-loopback' '10.244.0.7	bot-5d9c7b8f6-x7k2p' \
  '# Entries added by HostAliases.' '127.0.0.1	serve-alias' >"$root/etc/hosts"
need python3
if [ "$(id -u)" = 0 ]; then
  # As the image's user, as the pod runs it.
  netns=(unshare --net) userspec=--userspec=65532:65532
  chown 65532:65532 "$root/run"
else
  netns=(unshare --user --map-root-user --net) userspec=
fi
"${netns[@]}" bash -c "$(declare -f resolve_inside); resolve_inside \"\$@\"" _ \
  "$root" "$userspec" "$PWD/scripts"
rm -rf "$OUT/check"

echo "== check: skopeo inspect the archive"
inspect=$(skopeo inspect --config "oci-archive:$OUT/scaletest-oci.tar")
echo "$inspect" | grep -q '"architecture": "amd64"' || { echo "image.sh: not amd64: $inspect" >&2; exit 1; }
echo "$inspect" | grep -q '"/scaletest"' || { echo "image.sh: no /scaletest entrypoint: $inspect" >&2; exit 1; }
echo "$inspect" | grep -q '"User": "65532:65532"' || { echo "image.sh: not user 65532: $inspect" >&2; exit 1; }
layers=$(skopeo inspect "oci-archive:$OUT/scaletest-oci.tar" | grep -c '"sha256:' || true)
[ "$layers" -ge 1 ] || { echo "image.sh: no layers" >&2; exit 1; }
skopeo inspect "docker-archive:$OUT/scaletest-docker.tar" >/dev/null
size=$(du -k "$OUT/scaletest-oci.tar" | cut -f1)
echo "ok: $OUT/scaletest-oci.tar (${size} KiB), $OUT/scaletest-docker.tar, tag $TAG"
