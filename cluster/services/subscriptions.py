"""SubscriptionService: create, list, inspect, pause, resume and cancel subscriptions; read and
replay their dead letters; consume a pull subscription in-process.

A webhook or forwarding subscription is dispatched by a detached, named Ray actor
(actors.dispatcher, `esb-sub-<id>-0` in namespace `esb`) that this service creates; Ray restarts
it when it dies. Everything else lives in Redis and Kafka:

    esb:subs                          set of subscription ids
    esb:sub:<id>                      the SubscriptionRecord (with its secret)
    esb:sub:<id>:state                active | paused | disabled | cancelled
    esb:sub:<id>:stats                counters (delivered, retried, dead_lettered, ...), last error
    esb:sub:<id>:live                 pub/sub channel: deliveries and state changes
    esb:sub:<id>:replay               next dead-letter offset that a replay sends again
    esb:sub:<id>:done:<webhook-id>    exactly_once webhooks: delivered ids (TTL IDEMPOTENCY_TTL_S)
    esb:tenant:<t>:sub-groups         consumer_group_id -> subscription id (one each)
    Kafka: the group esb.<tenant>.<consumer_group_id>, the dead-letter topic
    esb.<tenant>.sub.<id>.dlq and the replay topic esb.<tenant>.sub.<id>.retry.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from cluster import naming
from cluster.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from cluster.kafka.clients import admin_client, committed_offsets, new_consumer
from cluster.models.subscriptions import (
    EventFilter,
    SubscriptionConfig,
    SubscriptionRecord,
)
from cluster.security.event_crypto import EventCipher
from cluster.security.webhooks import check_webhook_url, new_secret
from cluster.services.bus import Bus, shared_bus
from cluster.services.streaming import check_identifier
from cluster.settings import Settings

ALL = naming.ALL_SUBSCRIPTIONS
MAX_DLQ_PAGE = 1000
READ_DEADLINE_S = 15.0


def _groups_key(tenant_id: str) -> str:
    return naming.tenant_key(tenant_id, "sub-groups")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Dispatchers(Protocol):
    """Runs a push subscription's dispatchers: actors.launcher.DispatcherLauncher on Ray."""

    def start(self, record: SubscriptionRecord) -> None: ...
    def stop(self, record: SubscriptionRecord) -> None: ...
    def alive(self, record: SubscriptionRecord) -> list[bool]: ...


class NoDispatchers:
    """For services that only handle pull subscriptions (a higher layer injects the launcher)."""

    def _refuse(self, record: SubscriptionRecord) -> Any:
        raise ServiceUnavailable(
            f"subscription {record.subscription_id} needs dispatchers, and this "
            "SubscriptionService has no launcher: use event_streaming_bus.SubscriptionService, "
            "or pass launcher=actors.launcher.DispatcherLauncher(settings)"
        )

    start = stop = alive = _refuse


class SubscriptionService:
    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bus: Bus | None = None,
        launcher: Dispatchers | None = None,
    ) -> None:
        self._bus = bus or shared_bus(settings)
        self._launcher: Dispatchers = launcher or NoDispatchers()

    # --- lifecycle ----------------------------------------------------------------------------

    async def create_subscription(
        self, config: SubscriptionConfig, tenant_id: str, created_by: str = "sdk"
    ) -> tuple[SubscriptionRecord, str]:
        """Register and start a subscription; answers its record and its webhook secret (the
        only time the secret is handed out)."""
        check_identifier(tenant_id, "tenant_id")
        settings = self._bus.settings
        stream = await self._bus.streams.resolve(config.stream_id, tenant_id)
        output, output_partitions = None, 1
        if config.forward_to is not None:
            target = await self._bus.streams.resolve(config.forward_to, tenant_id)
            if target.stream_id == stream.stream_id:
                raise InvalidInput("forward_to must be another stream than stream_id")
            if stream.encrypted or target.encrypted:
                # Records are forwarded as they are: ciphertext is bound to its stream, and
                # plaintext must not land in an encrypted stream.
                raise InvalidInput("forward_to is not supported to or from encrypted streams")
            output, output_partitions = target.kafka_topic, target.partitions
        if config.webhook_url is not None:
            await asyncio.to_thread(
                check_webhook_url,
                config.webhook_url,
                allow_private=settings.allow_private_webhooks,
            )
        subscription_id = uuid.uuid4().hex[:16]
        redis = self._bus.redis
        if not await redis.hsetnx(
            _groups_key(tenant_id), config.consumer_group_id, subscription_id
        ):
            raise Conflict(
                f"consumer group {config.consumer_group_id!r} already has a subscription in "
                f"tenant {tenant_id!r}"
            )
        secret = new_secret()
        record = SubscriptionRecord(
            subscription_id=subscription_id,
            tenant_id=tenant_id,
            config=config,
            stream_id=stream.stream_id,
            kafka_topic=stream.kafka_topic,
            partitions=stream.partitions,
            group_id=naming.subscription_group(tenant_id, config.consumer_group_id),
            dead_letter_topic=naming.dead_letter_topic(tenant_id, subscription_id),
            retry_topic=naming.retry_topic(tenant_id, subscription_id),
            output_topic=output,
            output_partitions=output_partitions,
            encrypted=stream.encrypted,
            secret=secret,
            created_by=created_by,
            created_at=datetime.now(tz=UTC).isoformat(),
        )
        try:
            await asyncio.to_thread(self._provision, record)
            async with redis.pipeline(transaction=True) as pipe:
                pipe.set(naming.sub_key(subscription_id), record.model_dump_json())
                pipe.set(naming.sub_key(subscription_id, "state"), "active")
                pipe.sadd(ALL, subscription_id)
                await pipe.execute()
            if config.target != "pull":
                await asyncio.to_thread(self._launcher.start, record)
        except Exception:
            await redis.hdel(_groups_key(tenant_id), config.consumer_group_id)
            await redis.delete(
                naming.sub_key(subscription_id), naming.sub_key(subscription_id, "state")
            )
            await redis.srem(ALL, subscription_id)
            raise
        return record, secret

    def _provision(self, record: SubscriptionRecord) -> None:
        """Dead-letter and replay topics, and the group's start offsets (so `latest` means
        'after creation', whenever the dispatcher starts)."""
        topics = self._bus.topics
        replication = min(3, topics.broker_count())
        for topic in (record.dead_letter_topic, record.retry_topic):
            with contextlib.suppress(Conflict):
                topics.create(topic, 1, replication, {"retention.ms": str(14 * 24 * 3600_000)})
        marks = topics.watermarks(record.kafka_topic)
        config = record.config
        if config.start_position == "earliest":
            start = {p: low for p, (low, _) in marks.items()}
        elif config.start_position == "latest":
            start = {p: high for p, (_, high) in marks.items()}
        elif config.start_position == "offset":
            wanted = config.start_offset or 0
            start = {p: max(low, min(wanted, high)) for p, (low, high) in marks.items()}
        else:
            start = self._offsets_for_time(record, marks, config.start_time_ms or 0)
        partitions = [TopicPartition(record.kafka_topic, p, o) for p, o in sorted(start.items())]
        request = ConsumerGroupTopicPartitions(record.group_id, partitions)
        admin = admin_client(self._bus.settings)
        admin.alter_consumer_group_offsets([request])[record.group_id].result(30)

    def _offsets_for_time(
        self, record: SubscriptionRecord, marks: dict[int, tuple[int, int]], time_ms: int
    ) -> dict[int, int]:
        consumer = new_consumer(self._bus.settings, f"esb-admin-{uuid.uuid4().hex}")
        try:
            found = consumer.offsets_for_times(
                [TopicPartition(record.kafka_topic, p, time_ms) for p in marks], timeout=10
            )
        finally:
            consumer.close()
        return {
            tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found
        }

    async def get_record(
        self, subscription_id: str, tenant_id: str | None = None
    ) -> SubscriptionRecord:
        raw = await self._bus.redis.get(naming.sub_key(subscription_id))
        record = SubscriptionRecord.model_validate_json(raw) if raw else None
        if record is None or (tenant_id is not None and record.tenant_id != tenant_id):
            raise NotFound(f"subscription {subscription_id!r} not found")
        return record

    async def list_subscriptions(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        members = await self._bus.redis.smembers(ALL)
        ids = sorted(_text(m) or "" for m in members)
        raws = await self._bus.redis.mget([naming.sub_key(i) for i in ids]) if ids else []
        states = (
            await self._bus.redis.mget([naming.sub_key(i, "state") for i in ids]) if ids else []
        )
        found = []
        for raw, state in zip(raws, states, strict=True):
            if raw is None:
                continue
            record = SubscriptionRecord.model_validate_json(raw)
            if tenant_id is None or record.tenant_id == tenant_id:
                found.append({**record.public(), "state": _text(state)})
        return found

    async def _state(self, subscription_id: str) -> str:
        return (
            _text(await self._bus.redis.get(naming.sub_key(subscription_id, "state"))) or "unknown"
        )

    async def _set_state(self, record: SubscriptionRecord, state: str) -> None:
        redis = self._bus.redis
        await redis.set(naming.sub_key(record.subscription_id, "state"), state)
        await redis.publish(
            naming.sub_key(record.subscription_id, "live"),
            orjson.dumps({"type": "state", "state": state}),
        )

    async def pause(self, subscription_id: str, tenant_id: str | None = None) -> str:
        """Stop delivering (the dispatcher keeps its partitions, paused); resume continues."""
        record = await self.get_record(subscription_id, tenant_id)
        if (state := await self._state(subscription_id)) == "cancelled":
            raise Conflict(f"subscription {subscription_id!r} is {state}")
        await self._set_state(record, "paused")
        return "paused"

    async def resume(self, subscription_id: str, tenant_id: str | None = None) -> str:
        """Continue a paused or disabled (410) subscription; restarts missing dispatchers."""
        record = await self.get_record(subscription_id, tenant_id)
        if (state := await self._state(subscription_id)) == "cancelled":
            raise Conflict(f"subscription {subscription_id!r} is {state}")
        await self._set_state(record, "active")
        if record.config.target != "pull":
            await asyncio.to_thread(self._launcher.start, record)
        return "active"

    async def cancel(self, subscription_id: str, tenant_id: str | None = None) -> str:
        """Stop the dispatchers for good; the record and the dead letters stay readable, and the
        consumer group id is free again."""
        record = await self.get_record(subscription_id, tenant_id)
        await self._set_state(record, "cancelled")
        if record.config.target != "pull":
            await asyncio.to_thread(self._launcher.stop, record)
        await self._bus.redis.hdel(_groups_key(record.tenant_id), record.config.consumer_group_id)
        await asyncio.to_thread(self._delete_group, record.group_id)
        return "cancelled"

    def _delete_group(self, group_id: str) -> None:
        with contextlib.suppress(Exception):  # members may linger until their session ends
            admin_client(self._bus.settings).delete_consumer_groups([group_id])[group_id].result(15)

    # --- inspection ---------------------------------------------------------------------------

    async def status(self, subscription_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        """State, lag per partition, counters, the last error, and whether dispatchers run."""
        record = await self.get_record(subscription_id, tenant_id)
        state = await self._state(subscription_id)
        raw = await self._bus.redis.hgetall(naming.sub_key(subscription_id, "stats"))
        stats = {_text(k) or "": _text(v) for k, v in raw.items()}
        counters = {
            name: int(stats.pop(name, None) or 0)
            for name in (
                "delivered",
                "retried",
                "dead_lettered",
                "forwarded",
                "filtered_out",
                "undecodable",
                "undecryptable",
                "duplicates_skipped",
                "replayed",
                "dispatcher_starts",
            )
        }
        partitions = await asyncio.to_thread(self._lag, record)
        alive = (
            await asyncio.to_thread(self._launcher.alive, record)
            if record.config.target != "pull" and state != "cancelled"
            else []
        )
        return {
            "subscription_id": subscription_id,
            "subscription_name": record.config.subscription_name,
            "tenant_id": record.tenant_id,
            "state": state,
            "target": record.config.target,
            "delivery_mode": record.config.delivery_mode,
            "counts": counters,
            "lag": sum(p["lag"] for p in partitions),
            "partitions": partitions,
            "last_error": stats.get("last_error"),
            "last_error_at": stats.get("last_error_at"),
            "dispatchers_running": sum(alive),
            "dispatcher_restarts": max(0, counters["dispatcher_starts"] - record.dispatchers),
        }

    def _lag(self, record: SubscriptionRecord) -> list[dict[str, Any]]:
        marks = self._bus.topics.watermarks(record.kafka_topic)
        consumer = new_consumer(self._bus.settings, record.group_id)
        try:
            committed = committed_offsets(
                consumer, [TopicPartition(record.kafka_topic, p) for p in sorted(marks)]
            )
        finally:
            consumer.close()
        found = []
        for tp in committed:
            low, high = marks[tp.partition]
            offset = tp.offset if tp.offset >= 0 else None
            found.append(
                {
                    "partition": tp.partition,
                    "committed_offset": offset,
                    "end_offset": high,
                    "lag": high - (offset if offset is not None else low),
                }
            )
        return found

    async def dead_letters(
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
        record = await self.get_record(subscription_id, tenant_id)
        entries, next_offset = await asyncio.to_thread(
            self._read_dead_letters, record, offset, limit
        )
        return {
            "subscription_id": subscription_id,
            "dead_letter_topic": record.dead_letter_topic,
            "dead_letters": entries,
            "next_offset": next_offset,
        }

    def _read_dead_letters(
        self, record: SubscriptionRecord, offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        topic = record.dead_letter_topic
        low, high = self._bus.topics.watermarks(topic)[0]
        position = max(offset, low)
        if position >= high:
            return [], None
        consumer = new_consumer(self._bus.settings, f"esb-dlq-reader-{uuid.uuid4().hex}")
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

    async def replay_dead_letters(
        self, subscription_id: str, tenant_id: str | None = None, *, limit: int = MAX_DLQ_PAGE
    ) -> dict[str, Any]:
        """Send dead letters again (those not replayed before, oldest first, up to `limit`):
        their original records go to the subscription's replay topic, which its dispatchers
        consume like the stream, with the same filters, retries and dead-lettering."""
        record = await self.get_record(subscription_id, tenant_id)
        if await self._state(subscription_id) == "cancelled":
            raise Conflict(f"subscription {subscription_id!r} is cancelled")
        cursor_key = naming.sub_key(subscription_id, "replay")
        start = int(await self._bus.redis.get(cursor_key) or 0)
        page = await self.dead_letters(subscription_id, tenant_id, offset=start, limit=limit)
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
            await self._bus.redis.set(cursor_key, entries[-1]["dlq_offset"] + 1)
            await self._bus.redis.hincrby(
                naming.sub_key(subscription_id, "stats"), "replayed", len(entries)
            )
        return {"subscription_id": subscription_id, "replayed": len(entries)}

    # --- in-process consumption ---------------------------------------------------------------

    async def events(
        self, subscription_id: str, tenant_id: str | None = None, *, poll_timeout_s: float = 1.0
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of a pull subscription (no webhook_url, no forward_to), as decoded
        CloudEvents, with the subscription's group, filters and delivery mode: at_most_once
        commits each batch before handing its events out; the other modes commit a batch once
        the caller asks for the event after its last one (so an event is redelivered after a
        crash unless the caller finished it). Stop by breaking out of the loop.

            async for event in SubscriptionService().events(subscription_id):
                handle(event)
        """
        record = await self.get_record(subscription_id, tenant_id)
        if record.config.target != "pull":
            raise InvalidInput(
                f"subscription {subscription_id!r} is dispatched to its {record.config.target}; "
                "only subscriptions without webhook_url and forward_to are consumed in-process"
            )
        accept = EventFilter(record.config)
        cipher = (
            EventCipher(self._bus.keyring, record.tenant_id, record.stream_id)
            if record.encrypted
            else None
        )
        consumer = new_consumer(
            self._bus.settings, record.group_id, **{"client.id": record.config.consumer_name}
        )
        consumer.subscribe([record.kafka_topic, record.retry_topic])
        try:
            while True:
                if await self._state(subscription_id) != "active":
                    await asyncio.sleep(poll_timeout_s)
                    continue
                batch = await asyncio.to_thread(
                    consumer.consume, record.config.batch_size, poll_timeout_s
                )
                batch = [m for m in batch if m.error() is None]
                if not batch:
                    continue
                ends = {(m.topic(), m.partition()): (m.offset() or 0) + 1 for m in batch}
                offsets = [TopicPartition(t or "", p or 0, o) for (t, p), o in ends.items()]
                if record.config.delivery_mode == "at_most_once":
                    await asyncio.to_thread(consumer.commit, offsets=offsets, asynchronous=False)
                wanted = []
                for m in batch:
                    try:
                        event = orjson.loads(m.value() or b"")
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(event, dict) and accept.matches(event):
                        wanted.append(event)
                if cipher is not None:  # raises on an event that does not decrypt
                    wanted = await asyncio.to_thread(list, map(cipher.open, wanted))
                for event in wanted:
                    yield event
                if record.config.delivery_mode != "at_most_once":
                    await asyncio.to_thread(consumer.commit, offsets=offsets, asynchronous=False)
        finally:
            await asyncio.to_thread(consumer.close)
