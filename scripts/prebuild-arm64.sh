#!/usr/bin/env bash
# Builds the linux-arm64 prebuild with Debian's cross compiler and smoke-tests
# it under qemu-user with Debian's own arm64 nodejs (no arm64 machine needed):
# the package (dist/ and that prebuild, no build/ folder) is loaded by two
# arm64 processes in turn, which store, read, count across processes, read
# through the memo (its ordered Atomics loads) and verify.
# Run before publishing, on Debian 12 (bookworm), as root (it installs
# g++-aarch64-linux-gnu and qemu-user-static when missing, adds the arm64
# architecture to apt and unpacks nodejs:arm64 and its libraries into
# $SHMCACHE_ARM64_ROOT without installing them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${SHMCACHE_ARM64_ROOT:-/var/tmp/shmcache-arm64-root}

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v aarch64-linux-gnu-strip >/dev/null || missing+=(binutils-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x "$root/usr/bin/node" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download -qq nodejs:arm64 libnode108:arm64 libbrotli1:arm64 libc-ares2:arm64 \
    libc6:arm64 libicu72:arm64 libnghttp2-14:arm64 libssl3:arm64 libstdc++6:arm64 libgcc-s1:arm64 \
    libuv1:arm64 zlib1g:arm64 node-acorn node-cjs-module-lexer node-undici node-xtend)
  mkdir -p "$root"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$root"; done
  rm -rf "$debs"
fi
# qemu -L looks absolute paths up in $root first: the segment goes in its /tmp.
mkdir -p "$root/tmp"

pkg=$(mktemp -d)
seg=/tmp/shmcache-arm64-smoke-$$.shm
trap 'rm -rf "$pkg" "$root$seg"' EXIT
SHMCACHE_PREBUILD_ARCHS=arm64 SHMCACHE_PREBUILD_OUT="$pkg" node scripts/prebuild.mjs
node_modules/.bin/tsc -p tsconfig.build.json --outDir "$pkg/dist"
cp package.json "$pkg/"
ln -s "$PWD/node_modules" "$pkg/node_modules"
aarch64-linux-gnu-readelf -h "$pkg/prebuilds/linux-arm64/shmcache.glibc.node" | grep -E "Class|Machine"

node64=(qemu-aarch64-static -L "$root" "$root/usr/bin/node")
"${node64[@]}" scripts/prebuild-smoke.mjs "$pkg" "$seg" write
"${node64[@]}" scripts/prebuild-smoke.mjs "$pkg" "$seg" read
