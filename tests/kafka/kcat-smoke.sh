#!/usr/bin/env bash
# A real Kafka client against Silt's Kafka listener (issue 16): kcat (librdkafka) negotiates
# ApiVersions and reads Metadata from a broker started with --kafka-listen (the topic made over
# gRPC appears with its partitions, leaders and ISR), produces keyed records with an idempotent
# producer, reads every one back with a consumer from the beginning, then with a consumer group
# (classic protocol) that commits and resumes. Run by .ci/run (which installs
# kcat); cleans up on exit. Usage: tests/kafka/kcat-smoke.sh SILTD SILT
set -euo pipefail
siltd=$1
silt=$2
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
"$silt" -b "127.0.0.1:$grpc" topic create orders -p 3 -r 1 >/dev/null
out=$(timeout 30 kcat -L -b "127.0.0.1:$kafka" -t orders)
echo "$out"
for want in "broker 1 at 127.0.0.1:$kafka" 'topic "orders" with 3 partitions' \
  'partition 2, leader 1, replicas: 1, isrs: 1'; do
  if ! grep -qF "$want" <<<"$out"; then
    echo "kcat smoke: no '$want' in kcat -L" >&2
    tail -20 "$work/siltd.log" >&2
    exit 1
  fi
done
echo "kcat: metadata over the Kafka listener ok"

b="127.0.0.1:$kafka"
seq 1 3000 | sed 's/^/key-&:value-&/' |
  timeout 60 kcat -P -b "$b" -t orders -K: -X enable.idempotence=true -X linger.ms=5
got=$(timeout 60 kcat -C -b "$b" -t orders -o beginning -e -q -f '%k=%s\n' | sort)
want=$(seq 1 3000 | sed 's/^/key-&=value-&/' | sort)
if [ "$got" != "$want" ]; then
  echo "kcat smoke: consumed $(wc -l <<<"$got") records, want 3000 (first differences below)" >&2
  diff <(echo "$want") <(echo "$got") | head -5 >&2
  tail -20 "$work/siltd.log" >&2
  exit 1
fi
# The same records through Silt's own CLI: one store, two protocols.
n=$("$silt" -b "127.0.0.1:$grpc" consume orders --from-beginning -n 3000 --timeout-ms 10000 | wc -l)
[ "$n" = 3000 ] || { echo "kcat smoke: silt consume read $n records, want 3000" >&2; exit 1; }
echo "kcat: 3000 records produced (idempotent) and consumed over the Kafka listener ok"

# A balanced consumer (the classic group protocol: JoinGroup/SyncGroup, client-side assignor)
# reads them all and commits; a second run of the same group starts at the commits: nothing.
n=$(timeout 90 kcat -b "$b" -G smoke-group -X auto.offset.reset=earliest -e -q -f '%s\n' orders | wc -l)
[ "$n" = 3000 ] || { echo "kcat smoke: the group read $n records, want 3000" >&2; tail -20 "$work/siltd.log" >&2; exit 1; }
n=$(timeout 90 kcat -b "$b" -G smoke-group -X auto.offset.reset=earliest -e -q -f '%s\n' orders | wc -l)
[ "$n" = 0 ] || { echo "kcat smoke: the group read $n records again after committing" >&2; exit 1; }
echo "kcat: a classic consumer group read all 3000 and resumed at its commits ok"
