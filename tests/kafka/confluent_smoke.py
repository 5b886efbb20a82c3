#!/usr/bin/env python3
"""confluent-kafka (librdkafka, from PyPI) against Silt's Kafka listener (issue 16).

Starts a 3-broker `silt dev` cluster (Kafka listeners on every broker), then: an idempotent producer writes keyed records with
acks=all; a consumer group reads every one and commits, a new member of the group resumes at
the committed offsets and reads only what came after, and two members split the partitions,
both with KIP-848 groups (group.protocol=consumer) and with the classic protocol; the admin
client lists the group and deletes it once empty,
creates a topic with a config, describes and alters that config, describes the cluster and
deletes the topic. Compression (issue 19): librdkafka produces with gzip, snappy, lz4 and zstd;
`silt consume` (the Rust client) and a librdkafka consumer read every record; batches that
`silt produce --compression` wrote (lz4, zstd, snappy, gzip) are read by librdkafka.

Usage: confluent_smoke.py SILTD SILT. Every wait is bounded; the broker is stopped on exit.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

from smoke_util import start_dev, stop

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)

TOPIC = "orders"
PARTITIONS = 3
RECORDS = 2000



def fail(msg, log):
    print(f"confluent smoke: {msg}", file=sys.stderr)
    with open(log) as f:
        print("".join(f.readlines()[-30:]), file=sys.stderr)
    sys.exit(1)


def refused(future, code, what, log):
    """Fails unless `future` fails with the Kafka error `code` (a KafkaException naming it)."""
    try:
        future.result(timeout=30)
    except Exception as e:
        if code not in str(e):
            fail(f"{what}: {e}", log)
        return
    fail(f"{what} succeeded", log)


def produce(bootstrap, first, count):
    errors = []
    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
    })
    for i in range(first, first + count):
        p.produce(TOPIC, key=f"key-{i}", value=f"value-{i}",
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
        p.poll(0)
    left = p.flush(30)
    return left, errors


def consume(bootstrap, protocol, group, want, deadline_s):
    """Reads until `want` records arrived or the deadline passed; commits; returns values."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": protocol,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([TOPIC])
    got = []
    end = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < end:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            print(f"consumer error: {m.error()}", file=sys.stderr)
            continue
        got.append(m.value().decode())
    if got:
        c.commit(asynchronous=False)
    return c, got


def compression(silt, grpc, bootstrap, log):
    """Batches compressed by librdkafka read by Silt's Rust client, and the other way round."""
    topic = "zipped"
    subprocess.run([silt, "-b", grpc, "topic", "create", topic, "-p", "1"],
                   check=True, stdout=subprocess.DEVNULL, timeout=60)
    want = []
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        errors = []
        p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20,
                      "compression.type": codec})
        for i in range(100):
            v = f'{{"codec":"{codec}","i":{i},"pad":"{"x" * (i % 50)}"}}'
            want.append(v)
            p.produce(topic, value=v,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        if p.flush(30) or errors:
            fail(f"{codec}: librdkafka produce failed: {errors[:3]}", log)
    out = subprocess.run([silt, "-b", grpc, "consume", topic, "--from-beginning", "-n",
                          str(len(want)), "-f", "%v"], capture_output=True, text=True, timeout=60)
    got = out.stdout.splitlines()
    if out.returncode != 0 or got != want:
        fail(f"silt consume of librdkafka's compressed batches: rc {out.returncode}, "
             f"{len(got)} lines, first {got[:2]}; {out.stderr[-300:]}", log)
    print("compression: silt consume read 400 records librdkafka compressed with gzip, snappy, "
          "lz4 and zstd")
    mine = []
    for codec in ("lz4", "zstd", "snappy", "gzip"):
        lines = [f"silt-{codec}-{i}" for i in range(50)]
        mine += lines
        r = subprocess.run([silt, "-b", grpc, "produce", topic, "--compression", codec],
                           input="\n".join(lines) + "\n", capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            fail(f"silt produce --compression {codec}: {r.stderr}", log)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "zipped-reader",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    end = time.monotonic() + 60
    while len(got) < len(want) + len(mine) and time.monotonic() < end:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            fail(f"librdkafka consumer error on compressed batches: {m.error()}", log)
        got.append(m.value().decode())
    c.close()
    if got != want + mine:
        fail(f"librdkafka read {len(got)} of {len(want) + len(mine)} records "
             f"(last {got[-2:]})", log)
    print("compression: librdkafka read the 200 records silt produce compressed with lz4, zstd, "
          "snappy and gzip")


def main():
    silt = sys.argv[2]
    work = tempfile.mkdtemp()
    log = os.path.join(work, "dev.log")
    broker, grpc, bootstrap = start_dev(silt, work, 3)
    try:
        subprocess.run([silt, "-b", grpc, "topic", "create", TOPIC, "-p", str(PARTITIONS)],
                       check=True, stdout=subprocess.DEVNULL, timeout=60)

        left, errors = produce(bootstrap, 0, RECORDS)
        if left or errors:
            fail(f"{left} records unsent, delivery errors: {errors[:3]}", log)
        print(f"produced {RECORDS} records (idempotent, acks=all)")

        total = RECORDS
        # The same checks with KIP-848 groups (group.protocol=consumer: Silt's server-side
        # assignment) and with the classic protocol (JoinGroup/SyncGroup, client-side assignor).
        for protocol in ("consumer", "classic"):
            group = f"{protocol}-g1"
            c, got = consume(bootstrap, protocol, group, total, 60)
            c.close()
            want = {f"value-{i}" for i in range(total)}
            if sorted(got) != sorted(want):
                fail(f"{protocol}: the group read {len(got)} records ({len(set(got))} distinct), "
                     f"want {total}", log)
            print(f"{protocol} group: read all {total} records and committed")

            left, errors = produce(bootstrap, total, 10)
            if left or errors:
                fail(f"second produce: {left} unsent, errors {errors[:3]}", log)
            c, got = consume(bootstrap, protocol, group, 10, 60)
            # Give a stray redelivery a moment to show itself.
            extra = c.poll(1.0)
            c.close()
            want = sorted(f"value-{i}" for i in range(total, total + 10))
            total += 10
            if sorted(got) != want or (extra is not None and not extra.error()):
                fail(f"{protocol}: resumed member read {sorted(got)[:5]}... "
                     f"(+{extra is not None}), want {want[:5]}...", log)
            print(f"{protocol} group: a new member resumed at the committed offsets: exactly "
                  "the 10 new records")

            # Two members split the partitions between them.
            members = []
            for _ in range(2):
                m = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{protocol}-g2",
                              "group.protocol": protocol, "auto.offset.reset": "earliest"})
                m.subscribe([TOPIC])
                members.append(m)
            end = time.monotonic() + 60
            split = False
            while time.monotonic() < end and not split:
                for m in members:
                    m.poll(0.2)
                a, b = ({p.partition for p in m.assignment()} for m in members)
                split = bool(a) and bool(b) and not (a & b) and len(a | b) == PARTITIONS
            for m in members:
                m.close()
            if not split:
                fail(f"{protocol}: two members did not split the partitions: {a} and {b}", log)
            print(f"{protocol} group: two members split the partitions: {sorted(a)} and "
                  f"{sorted(b)}")

        compression(silt, grpc, bootstrap, log)

        admin = AdminClient({"bootstrap.servers": bootstrap})
        listed = admin.list_consumer_groups().result(timeout=30)
        ids = {g.group_id for g in listed.valid}
        if not {"consumer-g1", "consumer-g2", "classic-g1"} <= ids:
            fail(f"list_consumer_groups gave {ids}", log)
        for g in ("consumer-g1", "classic-g1"):
            admin.delete_consumer_groups([g])[g].result(timeout=30)
        listed = admin.list_consumer_groups().result(timeout=30)
        if {"consumer-g1", "classic-g1"} & {g.group_id for g in listed.valid}:
            fail("a group is still listed after delete", log)
        print("admin: groups listed, the empty group deleted")

        # Topics and their configs through the admin client.
        made = admin.create_topics([NewTopic("made-by-kafka", num_partitions=2,
                                             replication_factor=1,
                                             config={"retention.ms": "3600000"})])
        made["made-by-kafka"].result(timeout=30)
        again = admin.create_topics([NewTopic("made-by-kafka", num_partitions=2)])
        refused(again["made-by-kafka"], "TOPIC_ALREADY_EXISTS", "creating an existing topic", log)
        res = ConfigResource(ConfigResource.Type.TOPIC, "made-by-kafka")
        configs = admin.describe_configs([res])[res].result(timeout=30)
        if configs["retention.ms"].value != "3600000":
            fail(f"retention.ms is {configs['retention.ms'].value}", log)
        alter = ConfigResource(ConfigResource.Type.TOPIC, "made-by-kafka", incremental_configs=[
            ConfigEntry("retention.ms", "7200000",
                        incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([alter])[alter].result(timeout=30)
        configs = admin.describe_configs([res])[res].result(timeout=30)
        if configs["retention.ms"].value != "7200000":
            fail(f"retention.ms after alter is {configs['retention.ms'].value}", log)
        cluster = admin.describe_cluster().result(timeout=30)
        if sorted(f"{n.host}:{n.port}" for n in cluster.nodes) != sorted(bootstrap.split(",")):
            fail(f"describe_cluster nodes {cluster.nodes}", log)
        # kafka-topics --alter --partitions: CreatePartitions.
        admin.create_partitions([NewPartitions("made-by-kafka", 3)])["made-by-kafka"].result(timeout=30)
        count = len(admin.list_topics("made-by-kafka", timeout=30).topics["made-by-kafka"].partitions)
        if count != 3:
            fail(f"made-by-kafka has {count} partitions after create_partitions", log)
        fewer = admin.create_partitions([NewPartitions("made-by-kafka", 2)])
        refused(fewer["made-by-kafka"], "INVALID_PARTITIONS", "lowering the partition count", log)
        admin.delete_topics(["made-by-kafka"])["made-by-kafka"].result(timeout=30)
        if "made-by-kafka" in admin.list_topics(timeout=30).topics:
            fail("made-by-kafka still listed after delete", log)
        print("admin: topic created, its config described and altered, partitions added, "
              "cluster described, topic deleted")
    finally:
        stop(broker, signal.SIGINT, work)
    print("confluent-kafka: ok")


if __name__ == "__main__":
    main()
