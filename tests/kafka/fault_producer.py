#!/usr/bin/env python3
"""The librdkafka load of `tests/tests/kafka_fault_test.rs`: an idempotent acks=all producer
(confluent-kafka) that sends `p-0`, `p-1`, … to TOPIC for SECONDS at up to RATE records a second,
then waits for every outcome, and writes each acknowledged value, one per line, to OUT.

Usage: fault_producer.py BOOTSTRAP TOPIC SECONDS RATE OUT. Exits 0 once every send has an outcome.
"""

import sys
import time

from confluent_kafka import Producer


def main():
    bootstrap, topic, seconds, rate, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5]
    acked, failed = [], []

    def done(err, msg):
        (failed if err else acked).append(msg.value().decode() if not err else str(err))

    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        # Long enough to ride out a leader's death and its successor's election.
        "message.timeout.ms": 60000,
    })
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        while sent < (time.monotonic() - start) * rate:
            p.produce(topic, key=str(sent), value=f"p-{sent}", on_delivery=done)
            sent += 1
        p.poll(0.01)
    left = p.flush(120)
    with open(out, "w") as f:
        f.write("".join(f"{v}\n" for v in acked))
    print(f"sent {sent}, acknowledged {len(acked)}, failed {len(failed)}, unresolved {left}; "
          f"first failures: {failed[:3]}")
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
