#!/usr/bin/env bash
# Build the scaletest container image WITHOUT a Docker engine, then check it.
#
#   scripts/image.sh [OUT_DIR]          (default: target/image)
#
# 1. A statically linked binary: glibc with -C target-feature=+crt-static, built for the
#    explicit host target so the flag does not reach build scripts and proc macros.
#    (glibc >= 2.34 has its files and dns NSS modules inside libc, so name resolution works
#    in a static binary with the /etc/resolv.conf Kubernetes mounts into every container.)
# 2. A FROM-scratch OCI image holding only /scaletest, built with umoci (unprivileged, no
#    daemon): entrypoint /scaletest, user 65532, tag scaletest:VERSION.
# 3. Checks: unpack the image and run `scaletest --version` from the unpacked root file
#    system; `skopeo inspect` the OCI archive (architecture, entrypoint, user, one layer).
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
