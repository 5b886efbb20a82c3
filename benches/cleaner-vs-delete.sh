#!/usr/bin/env bash
# Log cleaner throughput and its effect on produce p99 (docs/performance.md, "Log cleaner"):
# one `silt dev` cluster (release build: cargo build --release -p silt-cli), one run. Data under
# /tmp/benchdev; ports 19300-19322.
set -u
cd "$(dirname "$0")/.."
S=target/release/silt
B=127.0.0.1:19300
rm -rf /tmp/benchdev
dd if=/dev/zero of=/tmp/ddtest bs=1M count=256 conv=fdatasync 2>&1 | tail -1; rm -f /tmp/ddtest
RUST_LOG=info $S dev --data-dir /tmp/benchdev --base-port 19300 > /tmp/dev19c.log 2>&1 &
DEV=$!
sleep 10
C="-c min.insync.replicas=2 -c segment.bytes=16777216 -c min.cleanable.dirty.ratio=0.5"
$S -b $B topic create plain -p 3 -r 3 -c min.insync.replicas=2 >/dev/null
$S -b $B topic create table -p 3 -r 3 $C -c cleanup.policy=compact >/dev/null
$S -b $B topic create table-del -p 3 -r 3 $C >/dev/null
sleep 3
for round in 1 2; do
  for t in table-del table; do
    $S -b $B -o json bench produce --topic $t --records 300000 --record-size 1024 --acks all \
      --producers 2 --payload json --keys 2000 > /tmp/b19c-load-$t-$round.json 2>/dev/null
    echo "round $round load $t $(cat /tmp/b19c-load-$t-$round.json)"
    echo "plain start $(date +%H:%M:%S.%N)"
    $S -b $B -o json bench produce --topic plain --records 150000 --record-size 512 --acks all \
      --producers 1 --rate 10000 > /tmp/b19c-plain-$t-$round.json 2>/dev/null
    echo "plain end $(date +%H:%M:%S.%N)"
    echo "round $round after $t plain $(cat /tmp/b19c-plain-$t-$round.json)"
    sleep 20
  done
done
for port in 19301 19311 19321; do curl -s 127.0.0.1:$port/metrics | grep "^silt_log_cleaner"; done
kill -INT $DEV; wait $DEV
grep "cleaned" /tmp/dev19c.log | grep -v "installed" | head -40
