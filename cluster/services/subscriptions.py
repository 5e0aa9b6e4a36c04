"""SubscriptionService: create, list, inspect, pause, resume and cancel subscriptions; read and
replay their dead letters; consume a pull subscription in-process.

A webhook or forwarding subscription is dispatched by a detached, named Ray actor
(actors.dispatcher, `esb-sub-<id>-0` in namespace `esb`) that this service creates; Ray restarts
it when it dies. Everything else lives in Redis (the keys are listed in
cluster.stores.subscriptions) and Kafka: the group esb.<tenant>.<consumer_group_id>, the
dead-letter topic esb.<tenant>.sub.<id>.dlq and the replay topic esb.<tenant>.sub.<id>.retry.

Reading and replaying dead letters is in cluster.services.dead_letters, in-process consumption
of pull subscriptions in cluster.services.pull; this service delegates to both.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Protocol

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from cluster import naming
from cluster.errors import Conflict, InvalidInput, ServiceUnavailable
from cluster.kafka.clients import (
    admin_client,
    committed_offsets,
    delete_group,
    new_consumer,
    offsets_for_time,
)
from cluster.models.subscriptions import SubscriptionConfig, SubscriptionRecord
from cluster.security.webhooks import check_webhook_url, new_secret
from cluster.services.bus import Bus, shared_bus
from cluster.services.dead_letters import MAX_DLQ_PAGE, DeadLetters
from cluster.services.pull import pull_events
from cluster.services.replay import ReplayStart, start_offsets
from cluster.services.streaming import check_identifier
from cluster.settings import Settings
from cluster.stores.subscriptions import SubscriptionStore


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
        self._dead_letters = DeadLetters(self._bus)
        self._group_deletions: set[asyncio.Task[bool]] = set()  # referenced until done

    @property
    def _store(self) -> SubscriptionStore:
        return SubscriptionStore(self._bus.redis)  # bus.redis: one client per event loop

    # --- lifecycle ----------------------------------------------------------------------------

    async def create_subscription(
        self, config: SubscriptionConfig, tenant_id: str, created_by: str = "sdk"
    ) -> tuple[SubscriptionRecord, str | None]:
        """Register and start a subscription; answers its record and its webhook secret (the
        only time the secret is handed out; None for pull and forward subscriptions)."""
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
        store = self._store
        await store.claim_group(tenant_id, config.consumer_group_id, subscription_id)
        secret = new_secret() if config.webhook_url is not None else None  # only webhooks sign
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
            secret=secret or "",
            created_by=created_by,
            created_at=datetime.now(tz=UTC).isoformat(),
        )
        try:
            await asyncio.to_thread(self._provision, record)
            await store.save(record)
            if config.target != "pull":
                await asyncio.to_thread(self._launcher.start, record)
        except Exception:
            await store.release_group(tenant_id, config.consumer_group_id)
            await store.discard(subscription_id)
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
        where = ReplayStart(config.start_position, config.start_offset, config.start_time_ms)
        start = start_offsets(marks, where, lambda ms: self._offsets_for_time(record, marks, ms))
        partitions = [TopicPartition(record.kafka_topic, p, o) for p, o in sorted(start.items())]
        request = ConsumerGroupTopicPartitions(record.group_id, partitions)
        admin = admin_client(self._bus.settings)
        admin.alter_consumer_group_offsets([request])[record.group_id].result(30)

    def _offsets_for_time(
        self, record: SubscriptionRecord, marks: dict[int, tuple[int, int]], time_ms: int
    ) -> dict[int, int]:
        consumer = new_consumer(self._bus.settings, naming.reader_group("admin"))
        try:
            return offsets_for_time(consumer, record.kafka_topic, marks, time_ms)
        finally:
            consumer.close()

    async def get_record(
        self, subscription_id: str, tenant_id: str | None = None
    ) -> SubscriptionRecord:
        return await self._store.get(subscription_id, tenant_id)

    async def list_subscriptions(self, tenant_id: str | None = None) -> list[dict[str, Any]]:
        return await self._store.list(tenant_id)

    async def pause(self, subscription_id: str, tenant_id: str | None = None) -> str:
        """Stop delivering (the dispatcher keeps its partitions, paused); resume continues."""
        record = await self.get_record(subscription_id, tenant_id)
        if (state := await self._store.state(subscription_id)) == "cancelled":
            raise Conflict(f"subscription {subscription_id!r} is {state}")
        await self._store.set_state(record.subscription_id, "paused")
        return "paused"

    async def resume(self, subscription_id: str, tenant_id: str | None = None) -> str:
        """Continue a paused or disabled (410) subscription; restarts missing dispatchers."""
        record = await self.get_record(subscription_id, tenant_id)
        if (state := await self._store.state(subscription_id)) == "cancelled":
            raise Conflict(f"subscription {subscription_id!r} is {state}")
        await self._store.set_state(record.subscription_id, "active")
        if record.config.target != "pull":
            await asyncio.to_thread(self._launcher.start, record)
        return "active"

    async def cancel(self, subscription_id: str, tenant_id: str | None = None) -> str:
        """Stop the dispatchers for good; the record and the dead letters stay readable, and the
        consumer group id is free again at once. The Kafka group itself is deleted in the
        background once the dispatchers' static memberships expire (session.timeout.ms, 10 s);
        a process that exits before then leaves the empty group for the broker to expire
        (offsets.retention.minutes)."""
        record = await self.get_record(subscription_id, tenant_id)
        await self._store.set_state(record.subscription_id, "cancelled")
        if record.config.target != "pull":
            await asyncio.to_thread(self._launcher.stop, record)
        await self._store.release_group(record.tenant_id, record.config.consumer_group_id)
        deletion = asyncio.create_task(
            asyncio.to_thread(delete_group, self._bus.settings, record.group_id)
        )
        self._group_deletions.add(deletion)
        deletion.add_done_callback(self._group_deletions.discard)
        return "cancelled"

    # --- inspection ---------------------------------------------------------------------------

    async def status(self, subscription_id: str, tenant_id: str | None = None) -> dict[str, Any]:
        """State, lag per partition, counters, the last error, and whether dispatchers run."""
        record = await self.get_record(subscription_id, tenant_id)
        state = await self._store.state(subscription_id)
        stats = await self._store.stats(subscription_id)
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
        return await self._dead_letters.page(subscription_id, tenant_id, offset=offset, limit=limit)

    async def replay_dead_letters(
        self, subscription_id: str, tenant_id: str | None = None, *, limit: int = MAX_DLQ_PAGE
    ) -> dict[str, Any]:
        """Send dead letters again (those not replayed before, oldest first, up to `limit`):
        their original records go to the subscription's replay topic, which its dispatchers
        consume like the stream, with the same filters, retries and dead-lettering."""
        return await self._dead_letters.replay(subscription_id, tenant_id, limit=limit)

    # --- in-process consumption ---------------------------------------------------------------

    def events(
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
        return pull_events(self._bus, subscription_id, tenant_id, poll_timeout_s=poll_timeout_s)
