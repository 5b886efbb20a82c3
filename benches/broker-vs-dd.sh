#!/usr/bin/env bash
# Single-broker throughput and latency with `silt bench`, as ratios to the raw disk bandwidth
# measured in the same run (dd ... conv=fdatasync on the disk holding the data directory).
# Usage (repository root): benches/broker-vs-dd.sh [RECORDS]   (default 1000000 x 1 KiB)
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
cargo build --release -q -p siltd -p silt-cli
bin=target/release
work=$(mktemp -d -p "${CARGO_TARGET_DIR:-target}")
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
dd_mbs() {
  dd if=/dev/zero of="$work/dd" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1 |
    python3 -c 'import re,sys; m=re.search(r"([\d.,]+) ([kMG]?B)/s", sys.stdin.read()); print(float(m.group(1).replace(",", "."))*{"kB":1e-3,"MB":1,"GB":1e3}[m.group(2)])'
  rm -f "$work/dd"
}
before=$(dd_mbs)
RUST_LOG=warn "$bin/siltd" --listen 127.0.0.1:0 --http "" --data-dir "$work/data" 2>"$work/siltd.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/siltd.log" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^siltd listening on //p' "$work/siltd.log")
silt() { "$bin/silt" -b "$addr" "$@"; }
silt topic create bench1 -p 4 >/dev/null
silt topic create benchall -p 4 >/dev/null
silt topic create benchlat -p 4 >/dev/null
run() { echo "$1" >&2; shift; silt -o json bench "$@"; }
p1=$(run "produce acks=1" produce --topic bench1 --records "$records" --record-size 1024 --acks 1 --producers 4)
pall=$(run "produce acks=all" produce --topic benchall --records "$records" --record-size 1024 --acks all --producers 4)
c1=$(run "consume" consume --topic bench1 --records "$records")
half=$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['records_per_sec']/2))" "$p1")
plat=$(run "produce acks=1 at half rate ($half/s)" produce --topic benchlat --records "$((records / 2))" --record-size 1024 --acks 1 --producers 4 --rate "$half")
after=$(dd_mbs)
python3 - "$before" "$after" "$p1" "$pall" "$c1" "$plat" <<'PY'
import json, sys
before, after = float(sys.argv[1]), float(sys.argv[2])
dd = (before + after) / 2
rows = [("produce acks=1, 4 partitions", sys.argv[3]), ("produce acks=all (fsync)", sys.argv[4]),
        ("consume", sys.argv[5]), ("produce acks=1 at half rate", sys.argv[6])]
print(f"raw disk dd conv=fdatasync: {before:.0f} / {after:.0f} MB/s, mean {dd:.0f}")
print(f"{'run':32} {'rec/s':>9} {'MB/s':>7} {'x dd':>6} {'p50':>7} {'p99':>7} {'p999':>7} {'max':>8}")
for name, j in rows:
    j = json.loads(j); l = j["latency_ms"]
    print(f"{name:32} {j['records_per_sec']:9.0f} {j['mb_per_sec']:7.1f} {j['mb_per_sec']/dd:6.2f} "
          f"{l['p50']:7.2f} {l['p99']:7.2f} {l['p999']:7.2f} {l['max']:8.2f}")
p1 = json.loads(sys.argv[3]); c1 = json.loads(sys.argv[5])
print(f"consume / produce(acks=1) = {c1['mb_per_sec']/p1['mb_per_sec']:.2f}")
PY
