#!/usr/bin/env bash
# Produce throughput over the Kafka listener (librdkafka via confluent-kafka) next to Silt's own
# gRPC client (`silt bench produce`), 1 KiB records, acks=1 and acks=all, one broker, in the
# same run, with the disk's raw write bandwidth (dd, fdatasync) as the baseline. Figures go to
# docs/performance.md as ratios. Needs release binaries (cargo build --release -p siltd -p
# silt-cli) and python3 with confluent-kafka. Cleans up on exit.
# Usage: benches/kafka_vs_grpc.sh [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-200000}
size=1024
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
for i in $(seq 1 100); do "$silt" -b "$b" cluster info >/dev/null 2>&1 && break; sleep 0.2; done

dd_out=$(dd if=/dev/zero of="$work/dd" bs=1M count=512 conv=fdatasync 2>&1 | tail -1)
rm -f "$work/dd"
dd_mb=$(python3 -c "import re,sys; m=re.search(r'([\d.]+) s, ([\d.]+) ([MG])B/s', sys.argv[1]); print(float(m.group(2))*(1000 if m.group(3)=='G' else 1))" "$dd_out")
echo "disk: dd 512 MiB with fdatasync: $dd_mb MB/s"
rate() { python3 -c 'import json,sys; print(round(json.load(sys.stdin)["records_per_sec"]))'; }
printf '%-6s %14s %14s %12s %10s\n' acks 'gRPC rec/s' 'Kafka rec/s' 'Kafka/gRPC' 'Kafka/dd'
for acks in 1 all; do
  "$silt" -b "$b" topic create "grpc-$acks" -p 1 -r 1 >/dev/null
  "$silt" -b "$b" topic create "kafka-$acks" -p 1 -r 1 >/dev/null
  g=$("$silt" -b "$b" -o json bench produce --topic "grpc-$acks" --records "$records" \
    --record-size "$size" --acks "$acks" --linger-ms 5 | rate)
  k=$(python3 benches/kafka_produce.py "127.0.0.1:$kafka" "kafka-$acks" "$records" "$size" "$acks" | rate)
  python3 -c "g,k,d,s=$g,$k,$dd_mb,$size; print(f'{\"$acks\":<6} {g:>14,} {k:>14,} {k/g:>12.2f} {k*s/1e6/d:>10.2f}')"
done
