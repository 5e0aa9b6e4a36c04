"""In-process consumption of a pull subscription (one without webhook_url and forward_to): its
events come to the caller's `async for`, with the subscription's group, filters and delivery
mode, instead of to a dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from cluster.errors import InvalidInput
from cluster.kafka.clients import new_consumer
from cluster.models.subscriptions import EventFilter
from cluster.security.event_crypto import EventCipher
from cluster.services.bus import Bus
from cluster.stores.subscriptions import SubscriptionStore


async def pull_events(
    bus: Bus, subscription_id: str, tenant_id: str | None = None, *, poll_timeout_s: float = 1.0
) -> AsyncIterator[dict[str, Any]]:
    """The events of a pull subscription, as decoded CloudEvents: at_most_once commits each
    batch before handing its events out; the other modes commit a batch once the caller asks
    for the event after its last one (so an event is redelivered after a crash unless the
    caller finished it). Stop by breaking out of the loop."""
    store = SubscriptionStore(bus.redis)
    record = await store.get(subscription_id, tenant_id)
    if record.config.target != "pull":
        raise InvalidInput(
            f"subscription {subscription_id!r} is dispatched to its {record.config.target}; "
            "only subscriptions without webhook_url and forward_to are consumed in-process"
        )
    accept = EventFilter(record.config)
    cipher = (
        EventCipher(bus.keyring, record.tenant_id, record.stream_id) if record.encrypted else None
    )
    consumer = new_consumer(
        bus.settings, record.group_id, **{"client.id": record.config.consumer_name}
    )
    consumer.subscribe([record.kafka_topic, record.retry_topic])
    try:
        while True:
            # bus.redis afresh each time: a bus closed meanwhile hands out a new client
            if await SubscriptionStore(bus.redis).state(subscription_id) != "active":
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
