#!/usr/bin/env python3
"""librdkafka's producer (confluent-kafka) against a Kafka listener: RECORDS records of SIZE
bytes to TOPIC with ACKS (1 or all), linger 5 ms; prints one JSON object like `silt bench
produce -o json` (records, bytes, seconds, records_per_sec, mb_per_sec).

Usage: kafka_produce.py BOOTSTRAP TOPIC RECORDS SIZE ACKS
"""

import json
import sys
import time

from confluent_kafka import Producer


def main():
    bootstrap, topic, records, size, acks = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5]
    p = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                  "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1 << 20})
    value = b"x" * size
    failed = []

    def done(err, _msg):
        if err:
            failed.append(err)
    # Warm up (connections, metadata) outside the clock.
    p.produce(topic, value=value, on_delivery=done)
    p.flush(30)
    start = time.monotonic()
    for _ in range(records):
        while True:
            try:
                p.produce(topic, value=value, on_delivery=done)
                break
            except BufferError:
                p.poll(0.001)
        p.poll(0)
    left = p.flush(120)
    seconds = time.monotonic() - start
    if left or failed:
        sys.exit(f"{left} unsent, {len(failed)} failed: {failed[:3]}")
    print(json.dumps({"records": records, "bytes": records * size, "seconds": seconds,
                      "records_per_sec": records / seconds,
                      "mb_per_sec": records * size / seconds / 1e6}))


if __name__ == "__main__":
    main()
