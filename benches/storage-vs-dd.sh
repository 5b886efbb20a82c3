#!/usr/bin/env bash
# Runs the storage benchmarks and reports them as ratios to the raw disk bandwidth measured in
# the same run (dd with one fdatasync at the end), on the disk that holds the target directory.
# Usage: benches/storage-vs-dd.sh   (from the repository root; takes ~2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target/tmp"
ddfile="$target/tmp/dd-baseline"
dd_once() {
  dd if=/dev/zero of="$ddfile" bs=1M count=1024 conv=fdatasync 2>&1 | tail -1
  rm -f "$ddfile"
}
echo "== raw disk: dd if=/dev/zero of=FILE bs=1M count=1024 conv=fdatasync"
before=$(dd_once); echo "before: $before"
cargo bench -p silt-benches --bench storage 2>&1 | grep -E "^(append|read)/|thrpt" || true
after=$(dd_once); echo "after:  $after"
python3 - "$target/criterion" "$before" "$after" <<'PY'
import json, os, re, sys
root, before, after = sys.argv[1], sys.argv[2], sys.argv[3]
def dd_bytes_per_s(line):
    m = re.search(r"([\d.,]+) ([kMG]?B)/s", line)
    v = float(m.group(1).replace(",", "."))
    return v * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)]
dd = (dd_bytes_per_s(before) + dd_bytes_per_s(after)) / 2
print(f"\nraw disk (mean of before/after): {dd/1e6:.0f} MB/s")
print(f"{'benchmark':45} {'MB/s':>9} {'x dd':>7}")
for group in ("append", "read"):
    gdir = os.path.join(root, group)
    for dirpath, _, files in sorted(os.walk(gdir)):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        est = json.load(open(os.path.join(dirpath, "estimates.json")))
        bench = json.load(open(os.path.join(dirpath, "benchmark.json")))
        nbytes = bench["throughput"]["Bytes"]
        bps = nbytes / (est["mean"]["point_estimate"] * 1e-9)
        name = bench["full_id"]
        print(f"{name:45} {bps/1e6:9.0f} {bps/dd:7.2f}")
PY
