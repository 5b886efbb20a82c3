#!/usr/bin/env bash
# kcat (librdkafka, the Debian package) against the Kafka listeners of a 3-broker `silt dev`
# cluster (issue 16): metadata; keyed records with a header, produced by an idempotent producer
# and read back from the beginning, identical over Kafka and over gRPC (`silt consume`), and
# records produced over gRPC (`silt produce`) identical over Kafka; a consumer from a timestamp;
# a consumer group (classic protocol) that commits and resumes; two group members that split
# the partitions. Run by .ci/run (which installs kcat); cleans up on exit.
# Usage: tests/kafka/kcat-smoke.sh SILTD SILT (SILTD is unused: silt dev runs the brokers).
set -euo pipefail
silt=$2
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "kcat smoke: $*" >&2
  exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
base=$(port)
kport=$(port)
"$silt" dev --brokers 3 --base-port "$base" --kafka-base-port "$kport" --data-dir "$work/data" \
  >"$work/dev.out" 2>"$work/dev.err" &
pid=$!
for _ in $(seq 1 240); do
  grep -q '^try:' "$work/dev.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/dev.err" >&2; fail "silt dev exited"; }
  sleep 0.5
done
grep -q '^try:' "$work/dev.out" || fail "silt dev did not come up"
boot=$(sed -n 's/^bootstrap: //p' "$work/dev.out")
b=$(sed -n 's/^kafka: \([^ ]*\).*/\1/p' "$work/dev.out")
s() { "$silt" -b "$boot" "$@"; }
s topic create orders -p 3 >/dev/null
s topic create from-grpc -p 3 >/dev/null

out=$(timeout 30 kcat -L -b "$b" -t orders)
for want in 'topic "orders" with 3 partitions' 'replicas: ' ; do
  grep -qF "$want" <<<"$out" || { echo "$out" >&2; fail "no '$want' in kcat -L"; }
done
[ "$(grep -c '^  broker ' <<<"$out")" = 3 ] || { echo "$out" >&2; fail "kcat -L lists not 3 brokers"; }
grep -q 'replicas: [0-9],[0-9],[0-9]' <<<"$out" || { echo "$out" >&2; fail "partitions without 3 replicas"; }
echo "kcat: metadata of a 3-broker cluster ok"

# Keyed records with a header, idempotent, acks=all; read back over Kafka and over gRPC.
seq 1 3000 | sed 's/.*/key-&:value-&/' |
  timeout 60 kcat -P -b "$b" -t orders -K: -H origin=kcat -X enable.idempotence=true -X linger.ms=5
want=$(seq 1 3000 | sed 's/.*/key-&=value-& origin=kcat/' | sort)
got=$(timeout 60 kcat -C -b "$b" -t orders -o beginning -e -q -f '%k=%s %h\n' | sort)
[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got") | head -5 >&2; fail "kcat read back $(wc -l <<<"$got") records, not the 3000 sent"; }
got=$(s consume orders --from-beginning -n 3000 --timeout-ms 10000 -f '%k=%v %h' | sort)
[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got") | head -5 >&2; fail "silt consume does not read what kcat produced"; }
echo "kcat: 3000 keyed records with a header produced (idempotent), identical over Kafka and gRPC"

seq 1 500 | sed 's/.*/g-&:from-grpc-&/' | s produce from-grpc --key-separator : -H origin=silt 2>/dev/null
want=$(seq 1 500 | sed 's/.*/g-&=from-grpc-& origin=silt/' | sort)
got=$(timeout 60 kcat -C -b "$b" -t from-grpc -o beginning -e -q -f '%k=%s %h\n' | sort)
[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got") | head -5 >&2; fail "kcat does not read what silt produced"; }
echo "kcat: 500 records produced over gRPC, identical over Kafka"

# From a timestamp: only the records produced after it.
sleep 1
ts=$(($(date +%s%N) / 1000000))
sleep 1
seq 1 100 | sed 's/.*/late-&/' | timeout 60 kcat -P -b "$b" -t orders
n=$(timeout 60 kcat -C -b "$b" -t orders -o "s@$ts" -e -q -f '%s\n' | grep -c '^late-' || true)
m=$(timeout 60 kcat -C -b "$b" -t orders -o "s@$ts" -e -q -f '%s\n' | wc -l)
[ "$n" = 100 ] && [ "$m" = 100 ] || fail "from timestamp $ts: $m records, $n of them late ones (want 100 and 100)"
echo "kcat: consuming from a timestamp reads exactly the 100 records after it"

# A balanced consumer (classic group protocol, client-side assignor) reads everything and
# commits; the group's second run starts at the commits and reads nothing.
total=3100
n=$(timeout 90 kcat -b "$b" -G smoke-group -X auto.offset.reset=earliest -e -q -f '%s\n' orders | wc -l)
[ "$n" = "$total" ] || fail "the group read $n records, want $total"
n=$(timeout 90 kcat -b "$b" -G smoke-group -X auto.offset.reset=earliest -e -q -f '%s\n' orders | wc -l)
[ "$n" = 0 ] || fail "the group read $n records again after committing"
echo "kcat: a consumer group read all $total, committed, and resumed at its commits"

# Two members of one group split the partitions between them.
members=()
for m in 1 2; do
  timeout 15 kcat -b "$b" -G split-group -X auto.offset.reset=earliest -q -f '%p %s\n' orders \
    >"$work/member$m" 2>/dev/null &
  members+=($!)
done
wait "${members[@]}" 2>/dev/null || true
p1=$(cut -d' ' -f1 "$work/member1" | sort -u | tr '\n' ' ')
p2=$(cut -d' ' -f1 "$work/member2" | sort -u | tr '\n' ' ')
n=$(cat "$work/member1" "$work/member2" | wc -l)
[ -n "$p1" ] && [ -n "$p2" ] || fail "one member got nothing: [$p1] and [$p2]"
[ -z "$(comm -12 <(tr ' ' '\n' <<<"$p1" | sed '/^$/d') <(tr ' ' '\n' <<<"$p2" | sed '/^$/d'))" ] ||
  fail "both members read partitions [$p1] and [$p2]"
[ "$n" = "$total" ] || fail "the two members read $n records, want $total"
echo "kcat: two group members split the partitions ([$p1] and [$p2]) and read all $total"
