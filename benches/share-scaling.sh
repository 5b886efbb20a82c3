#!/usr/bin/env bash
# Share groups (docs/performance.md, "Share groups"): one `silt dev` cluster (3 brokers, RF 3,
# release build: cargo build --release -p silt-cli), one partition.
#  1. Raw consume throughput of 100,000 records: a consumer group (the baseline, one member can
#     read a partition) vs a share group of 1 and of 8 members (every record acknowledged).
#  2. Scaling with members for a workload that sleeps WORK_MS per record: 2,000 records with
#     1, 2, 4 and 8 members; ideal = members x 1000 / WORK_MS records/s.
# Data under /tmp/benchdev; ports 19300-19322.
set -u
cd "$(dirname "$0")/.."
S=target/release/silt
B=127.0.0.1:19300
WORK_MS=${WORK_MS:-5}
rm -rf /tmp/benchdev
$S dev --data-dir /tmp/benchdev --base-port 19300 > /tmp/dev20.log 2>&1 &
DEV=$!
sleep 10
$S -b $B topic create q -p 1 -r 3 -c min.insync.replicas=2 >/dev/null
$S -b $B topic create w -p 1 -r 3 -c min.insync.replicas=2 >/dev/null
sleep 2
$S -b $B -o json bench produce --topic q --records 100000 --record-size 100 --acks all > /tmp/b20-q.json
$S -b $B -o json bench produce --topic w --records 2000 --record-size 100 --acks all > /tmp/b20-w.json
echo "consumer group, 1 member: $($S -b $B -o json bench consume --topic q --records 100000 --group plain)"
for n in 1 8; do
  echo "share group, $n members: $($S -b $B -o json bench consume --topic q --records 100000 --share-group raw$n --members $n)"
  $S -b $B -o json share-group describe raw$n | head -c 400; echo
done
for n in 1 2 4 8; do
  echo "work ${WORK_MS} ms, $n members: $($S -b $B -o json bench consume --topic w --records 2000 --share-group work$n --members $n --work-ms $WORK_MS)"
done
kill -INT $DEV; wait $DEV
