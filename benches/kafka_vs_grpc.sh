#!/usr/bin/env bash
# Produce and consume throughput over the Kafka listener (librdkafka, via kcat) against Silt's
# own gRPC client (`silt bench`), on one broker, in the same run, with the disk's raw write
# bandwidth (dd, fdatasync) as the baseline. Figures go to docs/performance.md as ratios.
# Usage: benches/kafka_vs_grpc.sh [RECORDS] (release binaries: cargo build --release -p siltd
# -p silt-cli). Needs kcat. Cleans up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
size=100
siltd=target/release/siltd
silt=target/release/silt
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grpc=$(port); internal=$(port); kafka=$(port)
"$siltd" --data-dir "$work/data" --listen "127.0.0.1:$grpc" --internal-listen "127.0.0.1:$internal" \
  --http "" --kafka-listen "127.0.0.1:$kafka" >"$work/siltd.log" 2>&1 &
pid=$!
b="127.0.0.1:$grpc"
k="127.0.0.1:$kafka"
"$silt" -b "$b" topic create via-grpc -p 1 -r 1 >/dev/null
"$silt" -b "$b" topic create via-kafka -p 1 -r 1 >/dev/null

dd_mb=$(dd if=/dev/zero of="$work/dd" bs=1M count=512 conv=fdatasync 2>&1 | awk '/copied/ {print $(NF-1), $NF}')
rm -f "$work/dd"
echo "disk (dd 512 MiB, fdatasync): $dd_mb"

# The same records for both: SIZE-byte values.
python3 -c "import sys; v='x'*($size-8); w=sys.stdout.write
for i in range($records): w(f'{i:08d}{v}\n')" >"$work/records.txt"

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/($3-$2):,.0f}')"; }

grpc_p=$("$silt" -b "$b" -o json bench produce --topic via-grpc --records "$records" \
  --record-size "$size" --acks all --linger-ms 5 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["records_per_sec"]))')
t0=$(now)
kcat -P -b "$k" -t via-kafka -X acks=all -X linger.ms=5 -l "$work/records.txt"
t1=$(now)
kafka_p=$(python3 -c "print(round($records/($t1-$t0)))")

grpc_c=$("$silt" -b "$b" -o json bench consume --topic via-grpc --records "$records" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["records_per_sec"]))')
t0=$(now)
n=$(kcat -C -b "$k" -t via-kafka -o beginning -e -q -f '%s\n' | wc -l)
t1=$(now)
[ "$n" = "$records" ] || { echo "kcat consumed $n of $records" >&2; exit 1; }
kafka_c=$(python3 -c "print(round($records/($t1-$t0)))")

python3 - "$grpc_p" "$kafka_p" "$grpc_c" "$kafka_c" "$records" "$size" <<'PY'
import sys
gp, kp, gc, kc, n, size = map(int, sys.argv[1:])
print(f"{n:,} records of {size} B, one broker, acks=all, linger 5 ms")
print(f"produce  gRPC (silt bench): {gp:>10,} rec/s   Kafka (kcat/librdkafka): {kp:>10,} rec/s   Kafka/gRPC = {kp/gp:.2f}")
print(f"consume  gRPC (silt bench): {gc:>10,} rec/s   Kafka (kcat/librdkafka): {kc:>10,} rec/s   Kafka/gRPC = {kc/gc:.2f}")
print(f"produce MB/s: gRPC {gp*size/1e6:.1f}, Kafka {kp*size/1e6:.1f}")
PY
