#!/usr/bin/env python3
"""SASL over TLS on Silt's Kafka listener (issue 16 with issue 17's users and ACLs), with
confluent-kafka (librdkafka) as the client.

Starts a 3-broker `silt dev --secure` (TLS, authentication and ACLs on; Kafka listener with SASL), creates
user alice with rights on one topic and one group, then: alice produces with SCRAM-SHA-256 and
consumes in a consumer group with PLAIN; a wrong password is refused; bob, with no ACL, may not
write the topic. Usage: sasl_smoke.py SILT. Every wait is bounded; the cluster is stopped on exit.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

from smoke_util import start_dev, stop

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient



def fail(msg):
    print(f"sasl smoke: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    silt = sys.argv[1]
    work = tempfile.mkdtemp()
    dev, _, kafka = start_dev(silt, work, 3, secure=True)
    try:
        env = dict(os.environ, SILT_CONFIG=os.path.join(work, "silt.toml"))

        def cli(*args, password=None):
            e = dict(env, SILT_PASSWORD=password) if password else env
            r = subprocess.run([silt, *args], env=e, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                fail(f"silt {' '.join(args)}: {r.stderr}")
        cli("topic", "create", "orders", "-p", "2")
        cli("user", "create", "alice", password="alice-pw")
        cli("user", "create", "bob", password="bob-pw")
        for args in (["--topic", "orders"], ["--group", "alice-group"]):
            cli("acl", "add", "--allow", "User:alice", "--operation", "all", *args)

        common = {"bootstrap.servers": kafka, "security.protocol": "SASL_SSL",
                  "ssl.ca.location": os.path.join(work, "tls", "ca.crt")}
        scram = dict(common, **{"sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "alice",
                                "sasl.password": "alice-pw"})
        errors = []
        p = Producer(dict(scram, **{"enable.idempotence": True, "acks": "all"}))
        for i in range(100):
            p.produce("orders", value=f"v{i}",
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        if p.flush(30) or errors:
            fail(f"alice could not produce with SCRAM-SHA-256: {errors[:3]}")
        print("alice produced 100 records over SASL_SSL with SCRAM-SHA-256")

        c = Consumer(dict(common, **{"sasl.mechanism": "PLAIN", "sasl.username": "alice",
                                     "sasl.password": "alice-pw", "group.id": "alice-group",
                                     "auto.offset.reset": "earliest"}))
        c.subscribe(["orders"])
        got, end = 0, time.monotonic() + 60
        while got < 100 and time.monotonic() < end:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got += 1
        c.close()
        if got != 100:
            fail(f"alice's group read {got} of 100 records with PLAIN")
        print("alice's consumer group read all 100 over SASL_SSL with PLAIN")

        wrong = AdminClient(dict(common, **{"sasl.mechanism": "SCRAM-SHA-256",
                                            "sasl.username": "alice",
                                            "sasl.password": "not-it"}))
        try:
            wrong.list_topics(timeout=10)
            fail("a wrong password listed topics")
        except KafkaException as e:
            print(f"a wrong password is refused: {e.args[0].str()[:80]}")

        refused = []
        bob = Producer(dict(common, **{"sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "bob",
                                       "sasl.password": "bob-pw", "message.timeout.ms": 10000}))
        bob.produce("orders", value="x", on_delivery=lambda err, msg: refused.append(err))
        bob.flush(20)
        if not refused or refused[0] is None or "AUTHORIZATION" not in refused[0].name():
            fail(f"bob wrote without an ACL: {refused}")
        print(f"bob, without an ACL, is refused: {refused[0].name()}")
    finally:
        stop(dev, signal.SIGINT, work)
    print("SASL: ok")


if __name__ == "__main__":
    main()
