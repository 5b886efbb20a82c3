#!/usr/bin/env bash
# Compression figures (docs/performance.md, "Compression"): per codec, --payload json, one
# `silt dev` cluster (release build: cargo build --release -p silt-cli), in one run. Data under
# /tmp/benchdev; ports 19300-19322.
set -u
cd "$(dirname "$0")/.."
S=target/release/silt
B=127.0.0.1:19300
rm -rf /tmp/benchdev /tmp/ddtest
dd if=/dev/zero of=/tmp/ddtest bs=1M count=256 conv=fdatasync 2>&1 | tail -1
rm -f /tmp/ddtest
$S dev --data-dir /tmp/benchdev --base-port 19300 > /tmp/dev19.log 2>&1 &
DEV=$!
sleep 10
for c in none gzip snappy lz4 zstd; do
  $S -b $B topic create json-$c -p 6 -r 3 -c min.insync.replicas=2 >/dev/null
done
sleep 3
for round in 1 2 3; do
  for c in none gzip snappy lz4 zstd; do
    $S -b $B -o json bench produce --topic json-$c --records 100000 --record-size 1024 \
      --acks all --producers 2 --payload json --compression $c > /tmp/b19-p-$c-$round.json 2>/dev/null
    $S -b $B -o json bench consume --topic json-$c --records 100000 > /tmp/b19-c-$c-$round.json 2>/dev/null
    echo "round $round $c produce $(cat /tmp/b19-p-$c-$round.json)"
    echo "round $round $c consume $(cat /tmp/b19-c-$c-$round.json)"
  done
done
for c in none gzip snappy lz4 zstd; do
  total=0
  for port in 19301 19311 19321; do
    v=$(curl -s 127.0.0.1:$port/metrics | grep "^silt_log_size_bytes{topic=\"json-$c\"" | awk '{s+=$2} END {print s+0}')
    total=$((total + v))
  done
  echo "disk $c $total"
done
kill -INT $DEV; wait $DEV
