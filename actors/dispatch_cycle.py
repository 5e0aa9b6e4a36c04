"""What one dispatcher cycle (actors.dispatcher) makes durable, and how.

`Cycle` collects what a cycle produced: dead letters and forwarded records, the offsets it got
past, the partitions to resume, its counters, live updates and last error. `Cycle.commit` makes
the records and the offsets durable in one Kafka transaction (send_offsets_to_transaction with
the consumer's group metadata); `Cycle.report` then adds the counters and publishes the live
updates in Redis:

    esb:sub:<id>:stats    counters (delivered, retried, dead_lettered, ...), last_error(_at)
    esb:sub:<id>:live     pub/sub channel: {"type": "deliveries", "items": [...]}, at most
                          LIVE_ITEMS_MAX items a message
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from redis import Redis

from cluster import naming

TP = tuple[str, int]
LIVE_ITEMS_MAX = 500


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Cycle:
    """What one cycle makes durable together."""

    outputs: list[tuple[str, int, bytes | None, bytes, Any]] = field(default_factory=list)
    advanced: dict[TP, int] = field(default_factory=dict)
    resume: list[TP] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    live: list[dict[str, Any]] = field(default_factory=list)
    last_error: str | None = None

    def commit(self, producer: Producer, consumer: Consumer, *, with_offsets: bool) -> None:
        """Dead letters, forwarded records and (unless at_most_once, which committed first:
        with_offsets false) the offsets, in one transaction. Any failure aborts it and ends this
        dispatcher; its replacement starts over from the committed offsets."""
        offsets = (
            [TopicPartition(t, p, o) for (t, p), o in sorted(self.advanced.items())]
            if with_offsets
            else []
        )
        if not self.outputs and not offsets:
            return
        producer.begin_transaction()
        try:
            for topic, partition, key, value, headers in self.outputs:
                while True:
                    try:
                        producer.produce(topic, value, key, partition=partition, headers=headers)
                        break
                    except BufferError:
                        producer.poll(0.05)
            if offsets:
                producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), 60
                )
            producer.commit_transaction(120)
        except KafkaException:
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(30)
            raise

    def report(self, redis: Redis, subscription_id: str) -> None:
        """Counters, the last error and the live updates, in one round trip (after the commit:
        a kill between the two loses the cycle's counts, never counts anything twice)."""
        sid = subscription_id
        pipe = redis.pipeline(transaction=False)
        for name, n in self.counters.items():
            pipe.hincrby(naming.sub_key(sid, "stats"), name, n)
        if self.last_error is not None:
            pipe.hset(
                naming.sub_key(sid, "stats"),
                mapping={"last_error": self.last_error[:500], "last_error_at": now_iso()},
            )
        if self.live:
            for start in range(0, len(self.live), LIVE_ITEMS_MAX):
                doc = {"type": "deliveries", "items": self.live[start : start + LIVE_ITEMS_MAX]}
                pipe.publish(naming.sub_key(sid, "live"), orjson.dumps(doc))
        pipe.execute()
