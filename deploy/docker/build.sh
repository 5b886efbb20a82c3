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
cp "target/$target/release/siltd" "target/$target/release/silt" "$ctx/"
cp deploy/siltd.toml "$ctx/siltd.toml"
mkdir "$ctx/data"
docker build -q -t "$image" -f deploy/docker/Dockerfile "$ctx" >/dev/null
echo "built $image ($(docker image inspect -f '{{.Size}}' "$image") bytes)"
