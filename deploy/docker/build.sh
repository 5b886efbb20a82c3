#!/usr/bin/env bash
# Builds the image `silt:dev` (or $IMAGE) from this repository alone: static glibc binaries
# (crt-static, see shared TOOLCHAIN notes) in a FROM scratch image. No registry is needed.
# Usage (anywhere): deploy/docker/build.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
image=${IMAGE:-silt:dev}
target=x86_64-unknown-linux-gnu
cd "$root"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -j2 --target "$target" -p siltd -p silt-cli
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# The release profile keeps line tables for profiling; the image does not need them.
for b in siltd silt; do
  if command -v strip >/dev/null 2>&1; then
    strip -o "$ctx/$b" "target/$target/release/$b"
  else
    cp "target/$target/release/$b" "$ctx/$b"
  fi
done
cp deploy/siltd.toml "$ctx/siltd.toml"
mkdir "$ctx/data"
docker build -q -t "$image" -f deploy/docker/Dockerfile "$ctx" >/dev/null
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
