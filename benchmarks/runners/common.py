"""What every runner subprocess shares: reading the whole topic from the beginning with the
product's consumer settings, and reporting one JSON line (timings, CPU, peak RSS) to the harness.

Runners run in their own process so CPU seconds and peak RSS are theirs alone (getrusage of
the process), measured from just before the first consume, after imports and set-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from benchmarks.procstat import self_usage
from cluster.kafka.clients import consumer_config
from cluster.settings import Settings

BATCH = 20_000  # the partition owners' MAX_BATCH
AUTH_ENV = "ESB_AUTHORIZATION"  # the harness hands runners the API's Authorization header here


def api_auth() -> dict[str, str]:
    """The Authorization header for the API, as the harness passed it."""
    value = os.environ.get(AUTH_ENV)
    return {"authorization": value} if value else {}


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--results-out", default=None, help="NDJSON file for window results")
    return parser.parse_args()


def open_consumer(bootstrap: str, topic: str) -> tuple[Consumer, int]:
    """A consumer assigned to every partition from the start, and how many records are there."""
    settings = Settings(kafka_bootstrap_servers=bootstrap)
    config = consumer_config(settings, f"bench-{uuid.uuid4().hex}")
    consumer = Consumer({**config, "fetch.max.bytes": 64 * 1024 * 1024})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    total = 0
    for p in partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return consumer, total


def batches(consumer: Consumer, total: int) -> Iterator[list[Message]]:
    """Batches of good records until `total` records were read."""
    seen = 0
    while seen < total:
        batch = [m for m in consumer.consume(BATCH, 0.1) if m.error() is None]
        seen += len(batch)
        if batch:
            yield batch


class Clock:
    """Wall time and CPU from construction (just before the first consume) to `report`."""

    def __init__(self) -> None:
        self.cpu0, _ = self_usage()
        self.t0 = time.perf_counter()
        self.first_record_s: float | None = None

    def first(self) -> None:
        if self.first_record_s is None:
            self.first_record_s = time.perf_counter() - self.t0

    def report(self, events: int, **extra: Any) -> None:
        seconds = time.perf_counter() - self.t0
        cpu, peak = self_usage()
        line = {
            "events": events,
            "seconds": seconds,
            "cpu_s": cpu - self.cpu0,
            "peak_rss_bytes": peak,
            "first_record_s": self.first_record_s,
            **extra,
        }
        sys.stdout.write(orjson.dumps(line).decode() + "\n")
        sys.stdout.flush()
