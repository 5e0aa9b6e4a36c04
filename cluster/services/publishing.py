"""EventPublishingService: events into their stream's topic, answered only after the broker acked.

Client event ids make publishing idempotent: the first publish of an id claims
`esb:idem:<stream>:<event id>` in Redis (short TTL while in flight, then `idempotency_ttl_s` with
the partition and offset), so a re-publish answers `duplicate` with where the original landed.
If the broker refuses an event its claim is released, so a retry can succeed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import orjson
import polars as pl
import pyarrow as pa
from pydantic import BaseModel

from cluster import naming
from cluster.coalescing import Coalescer
from cluster.errors import (
    EsbError,
    InvalidInput,
    PayloadTooLarge,
    SchemaViolation,
    ServiceUnavailable,
)
from cluster.models.streams import StreamRecord
from cluster.observability import metrics, tracing
from cluster.security.event_crypto import EventCipher
from cluster.services.bus import Bus, shared_bus
from cluster.services.schemas import SchemaRegistryService
from cluster.services.streaming import check_identifier, check_user_id
from cluster.services.validation import PayloadChecker
from cluster.settings import Settings
from pipelines.arrow_batch import FORMAT_HEADER, keyed_cloudevents, to_batches
from pipelines.envelope import (
    CONTENT_TYPE_HEADER,
    EventConfig,
    EventIn,
    encode,
    partition_for,
    to_cloudevent,
)

IN_FLIGHT_TTL_S = 120


class PublishReceipt(BaseModel):
    """Where one event landed. `str(receipt)` is its event id."""

    index: int = 0
    event_id: str
    status: Literal["published", "duplicate", "failed"]
    partition: int | None = None
    offset: int | None = None
    error: str | None = None

    def __str__(self) -> str:
        return self.event_id


class EventReceipt(PublishReceipt):
    """A single publish's receipt, with the id of the stream that took it (named or not)."""

    stream_id: str


class ArrowReceipt(BaseModel):
    """One Arrow-batched record per partition the events fell into."""

    stream_id: str
    kafka_topic: str
    events: int
    records: list[dict[str, int]]  # partition, offset


class BatchReceipt(BaseModel):
    stream_id: str
    kafka_topic: str
    published: int
    duplicates: int
    failed: int
    events: list[PublishReceipt]


def _event_ids(events: Sequence[EventIn]) -> list[str]:
    """Client ids, else random (version 4) UUIDs, from one read of the OS's randomness."""
    entropy = os.urandom(16 * len(events))
    return [
        e.event_id or str(uuid.UUID(bytes=entropy[16 * i : 16 * i + 16], version=4))
        for i, e in enumerate(events)
    ]


def _records(
    events: Sequence[EventIn],
    ids: list[str],
    fresh: list[int],
    stream: StreamRecord,
    user_id: str,
    now_ms: int,
    cipher: EventCipher | None = None,
    traceparent: str | None = None,
) -> list[tuple[bytes, bytes]]:
    """(key, CloudEvent JSON) of the events at `fresh` positions, sealed when `cipher` is set;
    `traceparent` is the CloudEvents distributed-tracing extension attribute."""
    records = []
    for i in fresh:
        event = to_cloudevent(
            events[i],
            event_id=ids[i],
            tenant_id=stream.tenant_id,
            stream_id=stream.stream_id,
            user_id=user_id,
            now_ms=now_ms,
        )
        if traceparent is not None:
            event["traceparent"] = traceparent
        records.append((events[i].key.encode(), encode(cipher.seal(event) if cipher else event)))
    return records


def _sealed_arrow(
    cipher: EventCipher, batches: list[tuple[int, bytes]]
) -> tuple[list[tuple[bytes | None, bytes]], list[int]]:
    """The events of Arrow batches as encrypted CloudEvents JSON records, and their partitions."""
    records: list[tuple[bytes | None, bytes]] = []
    partitions: list[int] = []
    for partition, value in batches:
        for key, event in keyed_cloudevents(value):
            records.append((key.encode(), encode(cipher.seal(event))))
            partitions.append(partition)
    return records, partitions


class EventPublishingService:
    def __init__(self, settings: Settings | None = None, *, bus: Bus | None = None) -> None:
        self._bus = bus or shared_bus(settings)
        # Concurrent single publishes to one stream share a batch (cluster.coalescing).
        self._singles: Coalescer[EventIn, EventReceipt | EsbError] = Coalescer(
            self._publish_together, max_batch=self._bus.settings.max_batch_events
        )
        # Payloads of event types a stream binds to a schema are validated (services.validation).
        self._checker = PayloadChecker(SchemaRegistryService(bus=self._bus))

    @property
    def bus(self) -> Bus:
        """The clients this service shares (APGEventStreamingIntegration consumes on them)."""
        return self._bus

    async def publish_event(
        self,
        event_config: EventConfig,
        payload: dict[str, Any],
        stream_id: str,
        tenant_id: str,
        user_id: str,
        **extra: Any,
    ) -> EventReceipt:
        """Publish one event; `extra` takes correlation_id, causation_id, event_id, event_time,
        partition_key."""
        event = EventIn(**event_config.model_dump(), payload=payload, **extra)
        return await self.publish_one(event, stream_id, tenant_id, user_id)

    async def publish_one(
        self, event: EventIn, stream_id: str, tenant_id: str, user_id: str
    ) -> EventReceipt:
        """Publish an event already validated; a refusal by the broker raises."""
        receipt = await self._singles.submit((stream_id, tenant_id, user_id), event)
        if isinstance(receipt, EsbError):  # this event alone: the others went out
            raise receipt
        if receipt.status == "failed":
            raise ServiceUnavailable(f"Kafka refused event {receipt.event_id}: {receipt.error}")
        return receipt

    async def _publish_together(
        self, events: list[EventIn], stream_id: str, tenant_id: str, user_id: str
    ) -> list[EventReceipt | EsbError]:
        # Coalesced singles are independent requests: an invalid one fails alone.
        rejected: dict[int, SchemaViolation] = {}
        try:
            batch = await self.publish_events(
                events, stream_id, tenant_id, user_id, rejected=rejected
            )
        except PayloadTooLarge:
            if len(events) == 1:
                raise
            return [await self._publish_alone(e, stream_id, tenant_id, user_id) for e in events]
        receipts = iter(batch.events)
        return [
            rejected[i]
            if i in rejected
            else EventReceipt.model_construct(
                **{**vars(next(receipts)), "index": 0}, stream_id=batch.stream_id
            )
            for i in range(len(events))
        ]

    async def _publish_alone(
        self, event: EventIn, stream_id: str, tenant_id: str, user_id: str
    ) -> EventReceipt | EsbError:
        try:
            return (await self._publish_together([event], stream_id, tenant_id, user_id))[0]
        except EsbError as exc:
            return exc

    def check_batch_size(self, count: int) -> None:
        """413 past MAX_BATCH_EVENTS; callers may check before validating a large body."""
        limit = self._bus.settings.max_batch_events
        if count > limit:
            raise PayloadTooLarge(f"batch has {count} events; the limit is {limit}")

    async def publish_events(
        self,
        events: Sequence[EventIn],
        stream_id: str,
        tenant_id: str,
        user_id: str,
        *,
        rejected: dict[int, SchemaViolation] | None = None,
    ) -> BatchReceipt:
        """Publish a batch; every event gets its own status, in the order given. An event that
        does not match its type's schema refuses the whole batch (SchemaViolation), unless
        `rejected` is given: then invalid events go there by index and the rest is published."""
        started = time.perf_counter()
        check_identifier(tenant_id, "tenant_id")
        check_user_id(user_id)
        self.check_batch_size(len(events))
        if not events:
            raise InvalidInput("a batch needs at least one event")
        stream = await self._bus.streams.resolve(stream_id, tenant_id)
        if stream.schemas:
            events = await self._valid(stream, events, rejected)
            if not events:
                return BatchReceipt(
                    stream_id=stream.stream_id,
                    kafka_topic=stream.kafka_topic,
                    published=0,
                    duplicates=0,
                    failed=0,
                    events=[],
                )
        ids = _event_ids(events)
        receipts: list[PublishReceipt | None] = [None] * len(events)
        fresh = await self._claim(stream.stream_id, events, ids, receipts)

        now_ms = int(time.time() * 1000)
        span = tracing.start_publish(tenant_id, stream.stream_id, len(fresh))
        traceparent = span.traceparent  # None unless TRACING_ENABLED
        cipher = self._bus.cipher(stream)  # decided once per batch: plain streams pay nothing
        if cipher is None:
            records = _records(events, ids, fresh, stream, user_id, now_ms, None, traceparent)
        else:
            try:  # in a thread: AES per event, and key store calls on a cache miss
                records = await asyncio.to_thread(
                    _records, events, ids, fresh, stream, user_id, now_ms, cipher, traceparent
                )
            except Exception as exc:
                span.end(error=repr(exc))
                await self._release(stream.stream_id, [ids[i] for i in fresh if events[i].event_id])
                raise
        try:
            self._check_record_sizes(records, fresh)
            deliveries = await self._bus.producer.send_many(
                stream.kafka_topic,
                records,
                headers=[CONTENT_TYPE_HEADER, *span.headers],  # traceparent when tracing
                timeout_s=self._bus.settings.publish_timeout_s + 5,
                partitions=[partition_for(events[i].key, stream.partitions) for i in fresh],
            )
        except EsbError as exc:
            span.end(error=exc.detail)
            await self._release(stream.stream_id, [ids[i] for i in fresh if events[i].event_id])
            raise
        for i, delivery in zip(fresh, deliveries, strict=True):
            receipts[i] = PublishReceipt.model_construct(  # the fields are ours: no validation
                index=i,
                event_id=ids[i],
                status="failed" if delivery.error else "published",
                partition=None if delivery.error else delivery.partition,
                offset=None if delivery.error else delivery.offset,
                error=delivery.error,
            )
        done = [r for r in receipts if r is not None]
        await self._settle(stream.stream_id, events, done)
        counts = Counter(r.status for r in done)  # one pass: published, duplicate, failed
        published, failed = counts["published"], counts["failed"]
        if published:
            await self._bus.streams.count_published(stream.stream_id, published)
        span.end()
        metrics.record_publish(
            tenant_id, stream.stream_id, published, time.perf_counter() - started, failed
        )
        return BatchReceipt(
            stream_id=stream.stream_id,
            kafka_topic=stream.kafka_topic,
            published=published,
            duplicates=counts["duplicate"],
            failed=failed,
            events=done,
        )

    def _check_record_sizes(
        self, records: Sequence[tuple[bytes | None, bytes]], indexes: Sequence[int]
    ) -> None:
        """413 naming every event whose record would be over MAX_EVENT_BYTES: none is sent."""
        limit = self._bus.settings.max_event_bytes
        over = [
            {"index": i, "bytes": len(key or b"") + len(value)}
            for i, (key, value) in zip(indexes, records, strict=True)
            if len(key or b"") + len(value) > limit
        ]
        if over:
            raise PayloadTooLarge(
                f"{len(over)} event(s) over MAX_EVENT_BYTES ({limit} bytes per Kafka record, "
                f"which the broker's message.max.bytes must fit): event {over[0]['index']} is "
                f"{over[0]['bytes']} bytes; nothing was published",
                errors=over,
            )

    async def _valid(
        self,
        stream: StreamRecord,
        events: Sequence[EventIn],
        rejected: dict[int, SchemaViolation] | None,
    ) -> Sequence[EventIn]:
        if rejected is None:
            await self._checker.check_events(stream, events)
            return events
        for index, problems in (await self._checker.violations(stream, events)).items():
            rejected[index] = self._checker.single(problems)
        return [e for i, e in enumerate(events) if i not in rejected]

    async def publish_arrow(
        self, frame: pl.DataFrame | pa.Table, stream_id: str, tenant_id: str, user_id: str
    ) -> ArrowReceipt:
        """Publish a frame of events as Arrow-batched records (pipelines.arrow_batch): columns
        event_type, source_capability, aggregate_id, aggregate_type, optionally event_id,
        event_time (epoch ms or zoned timestamp), partition_key, correlation_id, causation_id;
        every other column is a payload field. Client event ids are not deduplicated here
        (pipelines ignore repeated ids); the answer comes after the broker acked every record.

        An `encrypted: true` stream gets no Arrow-batched records: each event is written as its
        own encrypted CloudEvents JSON record (same partition, same key), so there is one
        encryption format for every reader; `records` then lists one entry per event."""
        started = time.perf_counter()
        check_identifier(tenant_id, "tenant_id")
        check_user_id(user_id)
        if isinstance(frame, pa.Table):
            frame = pl.DataFrame(pl.from_arrow(frame))
        if frame.is_empty():
            raise InvalidInput("an Arrow batch needs at least one event")
        stream = await self._bus.streams.resolve(stream_id, tenant_id)
        await self._checker.check_frame(stream, frame)
        batches = to_batches(
            frame,
            tenant_id=tenant_id,
            stream_id=stream.stream_id,
            user_id=user_id,
            partitions=stream.partitions,
            now_ms=int(time.time() * 1000),
            batch_id=uuid.uuid4().hex,
            max_bytes=self._bus.settings.max_event_bytes,
        )
        cipher = self._bus.cipher(stream)
        if cipher is None:
            records: list[tuple[bytes | None, bytes]] = [(None, value) for _, value in batches]
            partitions, headers = [p for p, _ in batches], [FORMAT_HEADER]
        else:
            records, partitions = await asyncio.to_thread(_sealed_arrow, cipher, batches)
            self._check_record_sizes(records, range(len(records)))
            headers = [CONTENT_TYPE_HEADER]
        span = tracing.start_publish(tenant_id, stream.stream_id, frame.height)
        try:
            deliveries = await self._bus.producer.send_many(
                stream.kafka_topic,
                records,
                headers=[*headers, *span.headers],  # traceparent when tracing
                timeout_s=self._bus.settings.publish_timeout_s + 5,
                partitions=partitions,
            )
        except EsbError as exc:
            span.end(error=exc.detail)
            raise
        failed = [d.error for d in deliveries if d.error]
        span.end(failed[0] if failed else None)
        if failed:
            raise ServiceUnavailable(f"Kafka refused {len(failed)} Arrow batch(es): {failed[0]}")
        await self._bus.streams.count_published(stream.stream_id, frame.height)
        metrics.record_publish(
            tenant_id, stream.stream_id, frame.height, time.perf_counter() - started
        )
        return ArrowReceipt(
            stream_id=stream.stream_id,
            kafka_topic=stream.kafka_topic,
            events=frame.height,
            records=[{"partition": d.partition, "offset": d.offset} for d in deliveries],
        )

    async def _claim(
        self,
        stream_id: str,
        events: Sequence[EventIn],
        ids: list[str],
        receipts: list[PublishReceipt | None],
    ) -> list[int]:
        """Claim client ids; fill receipts for duplicates and answer the indexes to publish."""
        claimed = [i for i, e in enumerate(events) if e.event_id]
        if not claimed:
            return list(range(len(events)))
        redis = self._bus.redis
        async with redis.pipeline(transaction=False) as pipe:
            for i in claimed:
                pipe.set(
                    naming.idempotency_key(stream_id, ids[i]), b"{}", nx=True, ex=IN_FLIGHT_TTL_S
                )
            won = await pipe.execute()
        lost = [i for i, ok in zip(claimed, won, strict=True) if not ok]
        if lost:
            originals = await redis.mget([naming.idempotency_key(stream_id, ids[i]) for i in lost])
            for i, raw in zip(lost, originals, strict=True):
                where = orjson.loads(raw) if raw else {}
                receipts[i] = PublishReceipt(index=i, event_id=ids[i], status="duplicate", **where)
        return [i for i in range(len(events)) if receipts[i] is None]

    async def _settle(
        self, stream_id: str, events: Sequence[EventIn], receipts: list[PublishReceipt]
    ) -> None:
        """Remember where claimed events landed; free the claims of those that failed."""
        mine = [r for r in receipts if events[r.index].event_id and r.status != "duplicate"]
        if not mine:
            return
        ttl = self._bus.settings.idempotency_ttl_s
        async with self._bus.redis.pipeline(transaction=False) as pipe:
            for r in mine:
                key = naming.idempotency_key(stream_id, r.event_id)
                if r.status == "published":
                    pipe.set(
                        key, orjson.dumps({"partition": r.partition, "offset": r.offset}), ex=ttl
                    )
                else:
                    pipe.delete(key)
            await pipe.execute()

    async def _release(self, stream_id: str, event_ids: list[str]) -> None:
        if event_ids:
            await self._bus.redis.delete(*[naming.idempotency_key(stream_id, i) for i in event_ids])
