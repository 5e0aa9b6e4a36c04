"""Appending to an event-sourced aggregate with an expected version (AggregateService.append).

Append protocol (cluster.stores.aggregates has the scripts and the key layout):

1. RESERVE: one Lua script decides the expectation atomically and, when it holds, records a
   reservation of versions n+1..n+k (a random token, the event ids, a lease of
   PUBLISH_TIMEOUT_S + LEASE_MARGIN_S). Event ids that already have versions answer those
   versions again (an idempotent retry). A concurrent appender finds the reservation and waits
   for it to close, then decides against the new version: exactly one of several writers at
   one expected version wins, the others get 409 with the current version.
2. PRODUCE: the k CloudEvents (version in the `esbversion` extension attribute) go to the
   aggregate's partition (its id is the key) in one call of the idempotent producer, acks=all.
3. CONFIRM: with every record acknowledged, one MULTI writes the index entries and CONFIRMs
   (version = n+k, reservation closed); then the caller is answered.

A produce that fails or times out leaves the reservation open and answers 503 ("retry with the
same event ids"). Once its lease is over, no record of it can still land (librdkafka's
message.timeout.ms is PUBLISH_TIMEOUT_S), and the next caller recovers it: it waits until the
indexer has read the partition up to its end offset, counts which of the reserved ids the
indexer saw (OBSERVE accepts only version+1, so they are a prefix), and CONFIRMs that many. So a
failed produce never leaves a gap, never a version without its record and never a record with
a version the store does not know; a retry with the same ids answers the versions they got.
Limit: the k records of one append are sent together to one partition, which the broker
normally appends as one batch; if a broker failure splits them, recovery keeps the delivered
prefix (versions stay contiguous, but that append is then partial).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from cluster.errors import (
    Conflict,
    PayloadTooLarge,
    ServiceUnavailable,
    WrongExpectedVersion,
)
from cluster.models.event_store import (
    AppendedEvent,
    AppendRequest,
    AppendResult,
)
from cluster.models.streams import StreamRecord
from cluster.services.bus import Bus
from cluster.services.event_store import EventStoreService, indexed
from cluster.services.streaming import check_identifier, check_user_id
from cluster.stores import aggregates
from cluster.stores.aggregates import AggregateStore
from cluster.stores.event_index import (
    IndexedEvent,
    event_time_ms,
    queue_writes,
    read_stored,
)
from pipelines.envelope import CONTENT_TYPE_HEADER, EventIn, encode, partition_for, to_cloudevent
from pipelines.event_frames import VERSION_ATTRIBUTE

LEASE_MARGIN_S = 15.0


class Appender:
    """The append protocol on one Bus; reads go through `store` (recovery waits on it).
    AggregateService is this class with the reads and folds added."""

    def __init__(self, bus: Bus, store: EventStoreService) -> None:
        self._bus, self._store = bus, store

    def _aggregates(self) -> AggregateStore:
        return AggregateStore(self._bus.redis)

    async def append(
        self,
        aggregate_type: str,
        aggregate_id: str,
        request: AppendRequest,
        tenant_id: str,
        user_id: str,
    ) -> AppendResult:
        """Append request.events as the next versions, or none (WrongExpectedVersion)."""
        check_identifier(tenant_id, "tenant_id")
        check_user_id(user_id)
        stream = indexed(await self._bus.streams.resolve(request.stream_id, tenant_id))
        ids = [e.event_id or str(uuid.uuid4()) for e in request.events]
        self._bus.cipher(stream)  # no master key for an encrypted stream: refused before reserving
        drafts = _drafts(stream, aggregate_type, aggregate_id, request, ids, user_id, _now_ms())
        agg = aggregates.keys(tenant_id, aggregate_type, aggregate_id)
        store, token = self._aggregates(), uuid.uuid4().hex
        lease_s = self._bus.settings.publish_timeout_s + LEASE_MARGIN_S
        expected = str(request.expected_version)
        deadline, delay = time.monotonic() + 2 * lease_s, 0.002
        while True:
            answer = await store.reserve(
                agg, expected, stream.stream_id, token, _now_ms(), int(lease_s * 1000), ids
            )
            verdict, current = answer[0], int(answer[1])
            if verdict == "ok":
                break
            if verdict == "dup":
                versions = [int(v) for v in answer[2:]]
                return await self._answer(stream, aggregate_type, aggregate_id, ids, versions)
            if verdict == "conflict":
                raise WrongExpectedVersion(
                    f"expected_version {expected} does not hold: {aggregate_type} "
                    f"{aggregate_id!r} is at version {current}; read it again and retry",
                    current_version=current,
                )
            if verdict == "partial":
                raise Conflict(
                    "some of these event ids were appended before and some not: "
                    "retry with exactly the events of the earlier append"
                )
            if verdict == "stream":
                raise Conflict(
                    f"{aggregate_type} {aggregate_id!r} lives in stream {answer[2]}: "
                    "append to that stream"
                )
            if verdict == "stale":
                await self._recover(agg, orjson.loads(answer[2]), stream)
            elif time.monotonic() > deadline:
                raise ServiceUnavailable("another append to this aggregate is still open; retry")
            else:  # busy: another writer holds the next versions for a moment
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
        base = int(answer[1])
        return await self._produce(stream, aggregate_type, aggregate_id, drafts, ids, base, token)

    async def _produce(
        self,
        stream: StreamRecord,
        aggregate_type: str,
        aggregate_id: str,
        drafts: list[dict[str, Any]],
        ids: list[str],
        base: int,
        token: str,
    ) -> AppendResult:
        """Steps 2 and 3 of the protocol, holding versions base+1.. under `token`."""
        agg = aggregates.keys(stream.tenant_id, aggregate_type, aggregate_id)
        versioned = [{**d, VERSION_ATTRIBUTE: base + 1 + i} for i, d in enumerate(drafts)]
        cipher = self._bus.cipher(stream)
        try:
            events = (
                versioned
                if cipher is None
                else await asyncio.to_thread(lambda: [cipher.seal(e) for e in versioned])
            )
        except Exception:  # nothing produced: hand the versions back at once
            await self._aggregates().confirm(agg, token, 0)
            raise
        partition = partition_for(aggregate_id, stream.partitions)
        unknown = ServiceUnavailable(
            "Kafka did not acknowledge the append; its outcome is unknown: retry with the same "
            f"event_ids after {self._bus.settings.publish_timeout_s + LEASE_MARGIN_S:.0f}s"
        )
        try:
            deliveries = await self._bus.producer.send_many(
                stream.kafka_topic,
                [(aggregate_id.encode(), encode(e)) for e in events],
                headers=[CONTENT_TYPE_HEADER],
                timeout_s=self._bus.settings.publish_timeout_s + 5,
                partitions=[partition] * len(events),
            )
        except Exception:  # a timeout, or librdkafka refusing part of the batch: unknown
            raise unknown from None
        if any(d.error for d in deliveries):
            raise unknown
        stored = [
            IndexedEvent(
                stream.tenant_id, stream.stream_id, d.partition, d.offset, 0, event_time_ms(e, 0), e
            )
            for d, e in zip(deliveries, events, strict=True)
        ]
        async with self._bus.redis.pipeline(transaction=True) as pipe:
            queue_writes(pipe, stored)
            await self._aggregates().confirm_on(pipe, agg, token, len(events))
            await pipe.execute()
        await self._bus.streams.count_published(stream.stream_id, len(events))
        return AppendResult(
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            stream_id=stream.stream_id,
            version=base + len(events),
            duplicate=False,
            events=[
                AppendedEvent(
                    event_id=i, version=base + 1 + n, partition=d.partition, offset=d.offset
                )
                for n, (i, d) in enumerate(zip(ids, deliveries, strict=True))
            ],
        )

    async def _recover(self, agg: list[str], pending: dict[str, Any], stream: StreamRecord) -> None:
        """An expired reservation: keep what the indexer saw land, drop the rest."""
        if not await self._store.wait_indexed([stream], deadline_s=30):
            raise ServiceUnavailable("recovering an earlier append needs the indexer; retry")
        landed = await self._aggregates().landed(agg, [str(i) for i in pending["ids"]])
        await self._aggregates().confirm(agg, str(pending["token"]), landed)

    async def _answer(
        self,
        stream: StreamRecord,
        aggregate_type: str,
        aggregate_id: str,
        ids: list[str],
        versions: list[int],
    ) -> AppendResult:
        head, _ = await self._aggregates().head(
            aggregates.keys(stream.tenant_id, aggregate_type, aggregate_id)
        )
        raws = await read_stored(self._bus.redis, stream.tenant_id, stream.stream_id, ids)
        where = [orjson.loads(r) if r else {} for r in raws]
        return AppendResult(
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            stream_id=stream.stream_id,
            version=head,
            duplicate=True,
            events=[
                AppendedEvent(event_id=i, version=v, partition=w.get("p"), offset=w.get("o"))
                for i, v, w in zip(ids, versions, where, strict=True)
            ],
        )


MAX_RECORD_BYTES = 900_000  # under the broker's default message.max.bytes (1 MiB)


def _drafts(
    stream: StreamRecord,
    aggregate_type: str,
    aggregate_id: str,
    request: AppendRequest,
    ids: list[str],
    user_id: str,
    now_ms: int,
) -> list[dict[str, Any]]:
    """The CloudEvents of an append, before versions are known; checked for size up front so
    the broker never refuses one after versions were reserved."""
    drafts = []
    for event_id, e in zip(ids, request.events, strict=True):
        event = EventIn(
            event_type=e.type,
            source_capability=stream.source_capability,
            aggregate_id=aggregate_id,
            aggregate_type=aggregate_type,
            correlation_id=e.correlation_id,
            causation_id=e.causation_id,
            payload=e.payload,
        )
        draft = to_cloudevent(
            event,
            event_id=event_id,
            tenant_id=stream.tenant_id,
            stream_id=stream.stream_id,
            user_id=user_id,
            now_ms=now_ms,
        )
        if len(encode(draft)) > MAX_RECORD_BYTES:
            raise PayloadTooLarge(
                f"event {event_id}: a record is limited to {MAX_RECORD_BYTES} bytes"
            )
        drafts.append(draft)
    return drafts


def _now_ms() -> int:
    return int(time.time() * 1000)
