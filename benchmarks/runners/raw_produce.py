"""The publish ceiling: one process producing pre-encoded CloudEvents with the product's producer
settings (idempotent, acks=all, lz4, linger 5 ms), timed until the broker acknowledged all.

    python -m benchmarks.runners.raw_produce --bootstrap HOST:PORT --topic TOPIC --events N
"""

from __future__ import annotations

import argparse

from confluent_kafka import KafkaError, Producer

from benchmarks.datagen import encode_values, make_workload
from benchmarks.runners.common import Clock
from cluster.kafka.clients import producer_config
from cluster.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--events", type=int, required=True)
    args = parser.parse_args()
    workload = make_workload(args.events, partitions=1)
    values = encode_values(workload.events)
    keys = [k.encode() for k in workload.events.get_column("key").to_list()]
    producer = Producer(producer_config(Settings(kafka_bootstrap_servers=args.bootstrap)))
    errors: list[str] = []

    def report(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err.str())

    clock = Clock()
    for value, key in zip(values, keys, strict=True):
        while True:
            try:
                producer.produce(args.topic, value, key, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.01)
    left = producer.flush(120)
    clock.report(args.events - len(errors) - left, failures=errors[:5], failed=len(errors) + left)


if __name__ == "__main__":
    main()
