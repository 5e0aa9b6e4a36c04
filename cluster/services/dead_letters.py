"""A subscription's dead letters: read them (oldest first) and replay them.

The dispatchers write each dead letter to the subscription's dead-letter topic
esb.<tenant>.sub.<id>.dlq (one partition) in the transaction that commits its offset. A replay
sends the original records to the replay topic esb.<tenant>.sub.<id>.retry, which the
dispatchers consume like the stream, and moves the cursor esb:sub:<id>:replay past them, so
nothing is replayed twice.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from cluster import naming
from cluster.errors import Conflict, InvalidInput, ServiceUnavailable
from cluster.kafka.clients import new_consumer
from cluster.models.subscriptions import SubscriptionRecord
from cluster.services.bus import Bus
from cluster.stores.subscriptions import SubscriptionStore

MAX_DLQ_PAGE = 1000
READ_DEADLINE_S = 15.0


class DeadLetters:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    @property
    def _store(self) -> SubscriptionStore:
        return SubscriptionStore(self._bus.redis)

    async def page(
        self,
        subscription_id: str,
        tenant_id: str | None = None,
        *,
        offset: int = 0,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Dead letters oldest first (committed transactions only), with their topic offsets."""
        if not 1 <= limit <= MAX_DLQ_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_DLQ_PAGE}")
        record = await self._store.get(subscription_id, tenant_id)
        entries, next_offset = await asyncio.to_thread(self._read, record, offset, limit)
        return {
            "subscription_id": subscription_id,
            "dead_letter_topic": record.dead_letter_topic,
            "dead_letters": entries,
            "next_offset": next_offset,
        }

    def _read(
        self, record: SubscriptionRecord, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        topic = record.dead_letter_topic
        low, high = self._bus.topics.watermarks(topic)[0]
        position = max(offset, low)
        if position >= high:
            return [], None
        consumer = new_consumer(self._bus.settings, naming.reader_group("dlq-reader"))
        entries: list[dict[str, Any]] = []
        try:
            consumer.assign([TopicPartition(topic, 0, position)])
            deadline = time.monotonic() + READ_DEADLINE_S
            while len(entries) < limit and position < high and time.monotonic() < deadline:
                batch = consumer.consume(min(500, limit - len(entries)), 0.5)
                for m in batch:
                    if m.error() is None and len(entries) < limit:
                        entries.append(
                            {"dlq_offset": m.offset(), **orjson.loads(m.value() or b"{}")}
                        )
                        position = (m.offset() or 0) + 1
                if not batch:  # control records (transaction markers) have no message
                    position = max(
                        position, consumer.position([TopicPartition(topic, 0)])[0].offset
                    )
        finally:
            consumer.close()
        return entries, (position if position < high else None)

    async def replay(
        self, subscription_id: str, tenant_id: str | None = None, *, limit: int = MAX_DLQ_PAGE
    ) -> dict[str, Any]:
        """Send dead letters again (those not replayed before, oldest first, up to `limit`):
        their original records go to the subscription's replay topic, which its dispatchers
        consume like the stream, with the same filters, retries and dead-lettering."""
        store = self._store
        record = await store.get(subscription_id, tenant_id)
        if await store.state(subscription_id) == "cancelled":
            raise Conflict(f"subscription {subscription_id!r} is cancelled")
        start = await store.replay_cursor(subscription_id)
        page = await self.page(subscription_id, tenant_id, offset=start, limit=limit)
        entries = page["dead_letters"]
        if entries:
            records = [
                (
                    e["key"].encode() if e.get("key") is not None else None,
                    base64.b64decode(e["value_b64"]),
                )
                for e in entries
            ]
            results = await self._bus.producer.send_many(record.retry_topic, records)
            failed = [r.error for r in results if r.error is not None]
            if failed:
                raise ServiceUnavailable(f"Kafka refused replayed records: {failed[:3]}")
            await store.replayed(subscription_id, entries[-1]["dlq_offset"] + 1, len(entries))
        return {"subscription_id": subscription_id, "replayed": len(entries)}
