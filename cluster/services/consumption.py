"""EventConsumptionService: read a stream's events back, page by page.

A page starts at an offset, a timestamp or a cursor, and ends at `limit` records or at the end
offsets the topic had when the read began. The cursor is the next offset per partition. An
Arrow-batched record is one entry (one offset) with all of its events.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
import polars as pl
from confluent_kafka import Consumer, TopicPartition

from cluster import naming
from cluster.errors import BadRequest, InvalidInput
from cluster.kafka.clients import new_consumer, offsets_for_time
from cluster.models.streams import StreamRecord
from cluster.models.subscriptions import SubscriptionConfig
from cluster.security.event_crypto import EventCipher
from cluster.services.bus import Bus, shared_bus
from cluster.services.subscriptions import SubscriptionService
from cluster.settings import Settings
from pipelines.arrow_batch import is_arrow_batch, to_cloudevents
from pipelines.envelope import decode

READ_DEADLINE_S = 15.0


def encode_cursor(positions: dict[int, int]) -> str:
    return base64.urlsafe_b64encode(
        orjson.dumps({str(p): o for p, o in positions.items()})
    ).decode()


def decode_cursor(cursor: str) -> dict[int, int]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return {int(p): int(o) for p, o in raw.items()}
    except (ValueError, AttributeError, orjson.JSONDecodeError):
        raise BadRequest("cursor is not one this API handed out") from None


class EventConsumptionService:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bus: Bus | None = None,
        subscriptions: SubscriptionService | None = None,
    ) -> None:
        self._bus = bus or shared_bus(settings)
        self._subscriptions = subscriptions or SubscriptionService(bus=self._bus)

    async def create_subscription(
        self, config: SubscriptionConfig, tenant_id: str, created_by: str = "sdk"
    ) -> str:
        """As in the product quick start: answers the subscription id. The webhook signing
        secret is shown once, by SubscriptionService.create_subscription (which this calls)."""
        record, _secret = await self._subscriptions.create_subscription(
            config, tenant_id, created_by
        )
        return record.subscription_id

    async def read_events(
        self,
        stream_id: str,
        tenant_id: str | None = None,
        *,
        partition: int | None = None,
        from_offset: int | None = None,
        from_time_ms: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        if not 1 <= limit <= self._bus.settings.max_read_limit:
            raise InvalidInput(f"limit must be between 1 and {self._bus.settings.max_read_limit}")
        if sum(x is not None for x in (from_offset, from_time_ms, cursor)) > 1:
            raise InvalidInput("give at most one of from_offset, from_time and cursor")
        record = await self._bus.streams.resolve(stream_id, tenant_id)
        if partition is not None and not 0 <= partition < record.partitions:
            raise InvalidInput(f"partition must be between 0 and {record.partitions - 1}")
        start = decode_cursor(cursor) if cursor else None
        cipher = self._bus.cipher(record)
        return await asyncio.to_thread(
            self._read, record, partition, from_offset, from_time_ms, start, limit, cipher
        )

    def _read(
        self,
        record: StreamRecord,
        partition: int | None,
        from_offset: int | None,
        from_time_ms: int | None,
        start: dict[int, int] | None,
        limit: int,
        cipher: EventCipher | None = None,
    ) -> dict[str, Any]:
        """One page; events of an encrypted stream come back decrypted, and one that does not
        decrypt fails the read (DecryptionFailed, or KeyDeleted once the tenant's key is gone)."""
        consumer = new_consumer(
            self._bus.settings, naming.reader_group("reader"), **{"enable.partition.eof": False}
        )
        try:
            topic = record.kafka_topic
            marks = self._bus.topics.watermarks(topic)
            wanted = [partition] if partition is not None else sorted(marks)
            positions = self._start_positions(
                consumer, topic, wanted, marks, from_offset, from_time_ms, start
            )
            events = self._consume(consumer, topic, positions, marks, limit, cipher)
        finally:
            consumer.close()
        more = any(positions[p] < marks[p][1] for p in positions)
        return {
            "stream_id": record.stream_id,
            "events": events,
            "next_cursor": encode_cursor(positions) if more else None,
        }

    @staticmethod
    def _start_positions(
        consumer: Consumer,
        topic: str,
        wanted: list[int],
        marks: dict[int, tuple[int, int]],
        from_offset: int | None,
        from_time_ms: int | None,
        start: dict[int, int] | None,
    ) -> dict[int, int]:
        if start is not None:
            return {p: max(start.get(p, marks[p][0]), marks[p][0]) for p in wanted}
        if from_time_ms is not None:
            return offsets_for_time(consumer, topic, {p: marks[p] for p in wanted}, from_time_ms)
        return {p: max(from_offset or 0, marks[p][0]) for p in wanted}

    @staticmethod
    def _consume(
        consumer: Consumer,
        topic: str,
        positions: dict[int, int],
        marks: dict[int, tuple[int, int]],
        limit: int,
        cipher: EventCipher | None = None,
    ) -> list[dict[str, Any]]:
        """Read until `limit` or every partition reached its end mark; advances `positions`."""
        open_parts = {p for p, o in positions.items() if o < marks[p][1]}
        if not open_parts:
            return []
        consumer.assign([TopicPartition(topic, p, positions[p]) for p in sorted(open_parts)])
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + READ_DEADLINE_S
        while open_parts and len(events) < limit and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=min(500, limit - len(events)), timeout=0.5)
            if not batch:  # idle: skipped control records or compacted gaps may end a partition
                _close_finished(consumer, topic, positions, marks, open_parts)
            for msg in batch:
                if msg.error() is not None:
                    continue
                p, offset = msg.partition() or 0, msg.offset() or 0
                if p not in open_parts or offset < positions[p] or len(events) >= limit:
                    continue
                events.append(_page_entry(msg.value() or b"{}", p, offset, msg, cipher))
                positions[p] = offset + 1
                if positions[p] >= marks[p][1]:
                    open_parts.discard(p)
        events.sort(key=lambda e: (e["partition"], e["offset"]))
        return events


def _close_finished(
    consumer: Consumer,
    topic: str,
    positions: dict[int, int],
    marks: dict[int, tuple[int, int]],
    open_parts: set[int],
) -> None:
    for tp in consumer.position([TopicPartition(topic, p) for p in sorted(open_parts)]):
        if tp.offset >= marks[tp.partition][1]:
            positions[tp.partition] = marks[tp.partition][1]
            open_parts.discard(tp.partition)


def _page_entry(
    value: bytes, partition: int, offset: int, msg: Any, cipher: EventCipher | None = None
) -> dict[str, Any]:
    """One record: its event, or for an Arrow-batched record its events (one offset, many)."""
    key = msg.key()
    entry = {
        "partition": partition,
        "offset": offset,
        "timestamp_ms": msg.timestamp()[1],
        "key": key.decode("utf-8", "replace") if key else None,
    }
    try:
        if is_arrow_batch(msg.headers()):
            return {**entry, "format": "arrow-batch-v1", "events": to_cloudevents(value)}
        event = decode(value)
    except (orjson.JSONDecodeError, pl.exceptions.PolarsError, OSError):
        # A record some other client wrote: show it, do not fail the page.
        return {**entry, "raw": value.decode("utf-8", "replace")}
    if cipher is not None and isinstance(event, dict):
        event = cipher.open(event)  # raises, never skips: a page must not hide an event
    return {**entry, "event": event}
