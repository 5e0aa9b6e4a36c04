"""Encryption at rest on the real broker, Redis and Ray: webhooks get plaintext while dead
letters stay encrypted and replay; a pull subscription yields decrypted events."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from cluster.models.subscriptions import RetryPolicy, SubscriptionConfig
from cluster.security.event_crypto import MARKER
from cluster.services.publishing import EventPublishingService
from cluster.settings import Settings
from event_streaming_bus import SubscriptionService
from tests.integration.conftest import read_topic
from tests.integration.encryption_helpers import (
    USER,
    assert_not_in_redis,
    canary,
    encrypted_stream,
    event,
    eventually,
    record_bytes,
)
from tests.integration.subscription_helpers import Receiver

pytestmark = pytest.mark.integration


async def test_webhooks_get_plaintext_dead_letters_stay_encrypted_and_replay(
    stack: Settings, ray_session: Any, unique: str
) -> None:
    tenant, secret = f"crypt-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"hooks-{unique}", partitions=2)
    sent = [event(secret, i, event_id=f"h-{unique}-{i}") for i in range(6)]
    refused = sent[2].event_id
    receiver = Receiver(lambda wid, n: 500 if wid == refused and n == 1 else 200)
    subscriptions = SubscriptionService(stack)
    record, _ = await subscriptions.create_subscription(
        SubscriptionConfig(
            subscription_name="hooks",
            stream_id=stream.stream_id,
            consumer_group_id=f"hooks-{unique}",
            start_position="earliest",
            webhook_url=receiver.url,
            retry_policy=RetryPolicy(max_attempts=1),
        ),
        tenant,
    )
    sid = record.subscription_id
    try:
        await EventPublishingService(stack).publish_events(sent, stream.stream_id, tenant, USER)
        [first, *_] = read_topic(stack, stream.kafka_topic, expected=len(sent))
        tampered = orjson.loads(first.value())
        tampered["data_base64"] = base64.b64encode(b"\x01" + bytes(60)).decode()
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
        producer.produce(stream.kafka_topic, orjson.dumps(tampered), first.key())
        assert producer.flush(30) == 0

        ok = {e.event_id for e in sent} - {refused}
        await eventually(lambda: set(receiver.delivered()) == ok, "the plaintext deliveries")
        for hit in receiver.hits:
            body = orjson.loads(hit.body)
            assert body["data"]["note"] == secret and MARKER not in body
        status = await eventually(
            lambda: _dead_lettered(subscriptions, sid, 2), "two dead letters committed"
        )
        assert status["counts"]["undecryptable"] == 1

        page = await subscriptions.dead_letters(sid, tenant)
        assert len(page["dead_letters"]) == 2
        assert secret.encode() not in orjson.dumps(page["dead_letters"])  # kept encrypted
        errors = sorted(d["error"] for d in page["dead_letters"])
        assert errors[0].startswith("DecryptionFailed") and "HTTP 500" in errors[1]

        assert (await subscriptions.replay_dead_letters(sid, tenant))["replayed"] == 2
        await eventually(lambda: refused in receiver.delivered(), "the replayed event")
        await eventually(lambda: _dead_lettered(subscriptions, sid, 3), "tampered one again")
        for topic in (stream.kafka_topic, record.dead_letter_topic, record.retry_topic):
            for r in read_topic(stack, topic, expected=1, deadline_s=10):
                assert secret.encode() not in record_bytes(r)
        assert_not_in_redis(stack, secret)
    finally:
        await subscriptions.cancel(sid, tenant)
        receiver.close()


async def _dead_lettered(
    service: SubscriptionService, subscription_id: str, count: int
) -> dict[str, Any] | None:
    status = await service.status(subscription_id)
    done = status["counts"]["dead_lettered"] >= count and status["lag"] == 0
    return status if done else None


async def test_pull_subscription_yields_decrypted_events(stack: Settings, unique: str) -> None:
    tenant, secret = f"crypt-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"pull-{unique}")
    sent = [event(secret, i) for i in range(4)]
    await EventPublishingService(stack).publish_events(sent, stream.stream_id, tenant, USER)
    service = SubscriptionService(stack)
    config = SubscriptionConfig(
        subscription_name="pull",
        stream_id=stream.stream_id,
        consumer_group_id=f"pull-{unique}",
        start_position="earliest",
    )
    record, _ = await service.create_subscription(config, tenant)

    async def take(n: int) -> list[dict[str, Any]]:
        got = []
        async for e in service.events(record.subscription_id, tenant):
            got.append(e)
            if len(got) == n:
                break
        return got

    try:
        got = await asyncio.wait_for(take(4), 120)
    finally:
        await service.cancel(record.subscription_id, tenant)
    assert [e["data"]["seq"] for e in got] == [0, 1, 2, 3]
    assert {e["data"]["note"] for e in got} == {secret}
