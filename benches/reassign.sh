#!/usr/bin/env bash
# Replica moves (docs/performance.md, "Replica moves"): one `silt dev --brokers 4` cluster
# (release build: cargo build --release -p silt-cli), data under /tmp/benchmove, ports 19400-19432.
#  0. Baseline: dd of SIZE_MB MiB with conv=fdatasync into the same directory.
#  1. A partition of SIZE_MB MiB (1 KiB records, acks=1) on one broker (RF 1) gets a second
#     replica: unthrottled, then (a second topic of the same size) at THROTTLE bytes/s. Time from
#     the reassign call until the move completed (the partition lists no adding replica).
#  2. Produce throughput and latency (acks=all, RF 3, min ISR 2, 1 KiB records, LOAD records, as
#     fast as one producer goes) without a move, then while a third SIZE_MB MiB partition is
#     copied unthrottled, then while a fourth is copied at THROTTLE bytes/s.
set -u
cd "$(dirname "$0")/.."
S=target/release/silt
B=127.0.0.1:19400
SIZE_MB=${SIZE_MB:-1024}
THROTTLE=${THROTTLE:-52428800}
LOAD=${LOAD:-200000}
RECORDS=$((SIZE_MB * 1024))
D=/tmp/benchmove
rm -rf $D; mkdir -p $D
echo "dd baseline: $(dd if=/dev/zero of=$D/dd.bin bs=1M count=$SIZE_MB conv=fdatasync 2>&1 | tail -1)"
rm -f $D/dd.bin
$S dev --brokers 4 --data-dir $D/dev --base-port 19400 --kafka-base-port 0 > /tmp/benchmove-dev.log 2>&1 &
DEV=$!
trap 'kill -INT $DEV; wait $DEV' EXIT
sleep 10

# Creates topic $1 (RF 1) and fills it with SIZE_MB MiB; prints the broker holding it.
fill() {
  $S -b $B topic create "$1" -p 1 -r 1 >/dev/null
  $S -b $B -o json bench produce --topic "$1" --records $RECORDS --record-size 1024 --acks 1 >/dev/null
  $S -b $B -o json topic describe "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitions"][0]["replicas"][0])'
}

# Moves topic $1 from broker $2 to $2 and another broker, extra flags $3...; prints seconds.
move() {
  local t=$1 from=$2; shift 2
  local to=$(( from % 4 + 1 ))
  local start=$(date +%s.%N)
  $S -b $B partition reassign "$t" 0 --replicas "$from,$to" "$@" >/dev/null
  for _ in $(seq 1 6000); do
    if $S -b $B -o json topic describe "$t" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitions"][0]; sys.exit(0 if not p["adding_replicas"] and len(p["isr"])==2 else 1)'; then
      break
    fi
    sleep 0.2
  done
  echo "$(date +%s.%N) - $start" | bc
}

owner=$(fill big1)
echo "move of $SIZE_MB MiB, unthrottled: $(move big1 "$owner") s"
owner=$(fill big2)
echo "move of $SIZE_MB MiB, throttled at $THROTTLE B/s: $(move big2 "$owner" --throttle-bytes-per-sec "$THROTTLE") s"

$S -b $B topic create load -p 1 -r 3 -c min.insync.replicas=2 >/dev/null
sleep 2
echo "produce without a move: $($S -b $B -o json bench produce --topic load --records $LOAD --record-size 1024 --acks all)"
owner=$(fill big3)
move big3 "$owner" > /tmp/benchmove-move3.txt &
MOVE=$!
sleep 0.5
echo "produce during a move: $($S -b $B -o json bench produce --topic load --records $LOAD --record-size 1024 --acks all)"
wait $MOVE
echo "(that move took $(cat /tmp/benchmove-move3.txt) s)"
owner=$(fill big4)
move big4 "$owner" --throttle-bytes-per-sec "$THROTTLE" > /tmp/benchmove-move4.txt &
MOVE=$!
sleep 0.5
echo "produce during a move throttled at $THROTTLE B/s: $($S -b $B -o json bench produce --topic load --records $LOAD --record-size 1024 --acks all)"
wait $MOVE
echo "(that move took $(cat /tmp/benchmove-move4.txt) s)"
