#!/usr/bin/env bash
# Builds the `txmq:dev` image (and `txmq-prometheus:dev` for deploy/compose.yaml) without pulling
# anything: a release build, its shared libraries found with ldd, a passwd entry for the
# non-root user 10001, then `docker build` FROM scratch.
#
#   ./scripts/build-image.sh            # both images
#   TAG=txmq:1.0 ./scripts/build-image.sh
#   PROFILE=debug TAG=txmq:test PROM_TAG=txmq-prometheus:test ./scripts/build-image.sh
#                                       # what the test suite does: the debug build it has
#   PROM_TAG= ./scripts/build-image.sh  # no Prometheus image
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${TAG:-txmq:dev}"
PROM_TAG="${PROM_TAG-txmq-prometheus:dev}"
PROFILE="${PROFILE:-release}"
command -v docker >/dev/null || { echo "error: docker is not installed" >&2; exit 1; }

case "$PROFILE" in
  release) cargo build --release -p txmq-broker --bin txmq ;;
  debug) cargo build -p txmq-broker --bin txmq ;;
  *) echo "error: PROFILE must be release or debug" >&2; exit 1 ;;
esac
work="$(mktemp -d -t txmq-image-XXXXXX)"
trap 'rm -rf "$work"' EXIT
cp deploy/image/Dockerfile deploy/image/Dockerfile.prometheus "$work/"

# Copies a binary and every shared library it links (with the loader) into a root file system.
stage() {
  local bin="$1" root="$2" dest="$3"
  install -D -m 0755 "$bin" "$root$dest"
  ldd "$bin" | awk '/=> \// {print $3} /^[ \t]*\// {print $1}' | sort -u | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

root="$work/rootfs"
stage "target/$PROFILE/txmq" "$root" /usr/local/bin/txmq
mkdir -p "$root/etc" "$root/data" "$root/tmp"
printf 'root:x:0:0:root:/:/sbin/nologin\ntxmq:x:10001:10001:txmq:/data:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\ntxmq:x:10001:\n' >"$root/etc/group"
chown -R 10001:10001 "$root/data"
chmod 1777 "$root/tmp"
tar --numeric-owner -C "$root" -cf "$work/rootfs.tar" .
docker build -q -t "$TAG" -f "$work/Dockerfile" "$work" >/dev/null
echo "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.1f MB", $1/1e6}'))"

if [ -z "$PROM_TAG" ]; then
  exit 0
elif command -v prometheus >/dev/null; then
  proot="$work/rootfs-prometheus"
  stage "$(command -v prometheus)" "$proot" /bin/prometheus
  install -D -m 0644 deploy/compose/prometheus.yml "$proot/etc/prometheus/prometheus.yml"
  install -D -m 0644 helm/txmq/files/alerts.yaml "$proot/etc/prometheus/alerts.yaml"
  mkdir -p "$proot/prometheus"
  chown -R 65534:65534 "$proot/prometheus"
  tar --numeric-owner -C "$proot" -cf "$work/rootfs-prometheus.tar" .
  docker build -q -t "$PROM_TAG" -f "$work/Dockerfile.prometheus" "$work" >/dev/null
  echo "built $PROM_TAG"
else
  echo "note: Debian's prometheus package is not installed; skipped $PROM_TAG (apt-get install prometheus)" >&2
fi
