#!/usr/bin/env bash
# Replicated throughput and latency: 3 siltd processes, RF 3, min.insync.replicas=2, acks=all,
# durability=fsync, against one siltd with acks=1 and the raw disk (dd ... conv=fdatasync), all
# measured in the same run on the same disk. Every broker, the bench client and dd share the
# machine's cores and its one disk (three copies of every byte land on it).
# Usage (repository root): benches/cluster-vs-single.sh [RECORDS]   (default 500000 x 1 KiB)
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-500000}
cargo build --release -q -p siltd -p silt-cli
bin=target/release
work=$(mktemp -d -p "${CARGO_TARGET_DIR:-target}")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
dd_mbs() {
  dd if=/dev/zero of="$work/dd" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1 |
    python3 -c 'import re,sys; m=re.search(r"([\d.,]+) ([kMG]?B)/s", sys.stdin.read()); print(float(m.group(1).replace(",", "."))*{"kB":1e-3,"MB":1,"GB":1e3}[m.group(2)])'
  rm -f "$work/dd"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() { for _ in $(seq 200); do grep -q "listening on" "$1" 2>/dev/null && return; sleep 0.1; done; echo "no broker: $1" >&2; exit 1; }
run() { echo "$1" >&2; shift; "$bin/silt" -b "$addr" -o json bench "$@"; }
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }

before=$(dd_mbs)

# One broker, acks=1: the baseline.
RUST_LOG=warn "$bin/siltd" --listen "127.0.0.1:$(free_port)" --http "" --data-dir "$work/single" 2>"$work/single.log" &
pids+=($!)
wait_listening "$work/single.log"
addr=$(sed -n 's/^siltd listening on //p' "$work/single.log")
"$bin/silt" -b "$addr" topic create bench -p 4 >/dev/null
single=$(run "single broker, acks=1" produce --topic bench --records "$records" --record-size 1024 --acks 1 --producers 4)
stop_all

# Three brokers, RF 3, acks=all.
ports=($(free_port) $(free_port) $(free_port))
peers="1@127.0.0.1:${ports[0]},2@127.0.0.1:${ports[1]},3@127.0.0.1:${ports[2]}"
for i in 1 2 3; do
  RUST_LOG=warn "$bin/siltd" --node-id "$i" --listen "127.0.0.1:${ports[$((i - 1))]}" --http "" \
    --peers "$peers" --data-dir "$work/b$i" 2>"$work/b$i.log" &
  pids+=($!)
done
for i in 1 2 3; do wait_listening "$work/b$i.log"; done
addr="127.0.0.1:${ports[0]}"
for _ in $(seq 100); do
  "$bin/silt" -b "$addr" topic create bench -p 4 -r 3 -c min.insync.replicas=2 -c durability=fsync >/dev/null 2>&1 && break
  sleep 0.3
done
sleep 2
cluster=$(run "3 brokers, RF 3, acks=all, fsync" produce --topic bench --records "$records" --record-size 1024 --acks all --producers 4)
half=$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['records_per_sec']/2))" "$cluster")
"$bin/silt" -b "$addr" topic create benchlat -p 4 -r 3 -c min.insync.replicas=2 >/dev/null
lat=$(run "3 brokers, acks=all at half rate ($half/s)" produce --topic benchlat --records "$((records / 2))" --record-size 1024 --acks all --producers 4 --rate "$half")
stop_all

after=$(dd_mbs)
python3 - "$before" "$after" "$single" "$cluster" "$lat" <<'PY'
import json, sys
before, after = float(sys.argv[1]), float(sys.argv[2])
dd = (before + after) / 2
single, cluster, lat = (json.loads(a) for a in sys.argv[3:6])
print(f"raw disk dd conv=fdatasync: {before:.0f} / {after:.0f} MB/s, mean {dd:.0f}")
print(f"{'run':40} {'rec/s':>9} {'MB/s':>7} {'x dd':>6} {'p50':>7} {'p99':>7} {'p999':>7}")
for name, j in [("single broker acks=1", single), ("3 brokers RF3 acks=all fsync", cluster),
                ("3 brokers acks=all at half rate", lat)]:
    l = j["latency_ms"]
    print(f"{name:40} {j['records_per_sec']:9.0f} {j['mb_per_sec']:7.1f} {j['mb_per_sec']/dd:6.2f} "
          f"{l['p50']:7.2f} {l['p99']:7.2f} {l['p999']:7.2f}")
print(f"RF3 acks=all / single acks=1 = {cluster['mb_per_sec']/single['mb_per_sec']:.2f}")
PY
