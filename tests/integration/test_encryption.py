"""Encryption at rest on the real broker, Redis and Ray, through the SDK services: a canary
published to an encrypted stream is in no raw Kafka record and nowhere in Redis (keys, RDB,
AOF) yet reads back; ciphertext fails under another tenant's key or with a flipped bit; master
rotation keeps old events readable; deleting a tenant's keys shreds its data; pipelines and
webhooks see plaintext."""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
import redis
from confluent_kafka import Producer

from cluster.cli.keys import keys_command
from cluster.errors import InvalidInput
from cluster.models.streams import StreamConfig
from cluster.models.subscriptions import RetryPolicy, SubscriptionConfig
from cluster.security import DecryptionFailed, KeyDeleted, MasterKey
from cluster.security.event_crypto import MARKER, EventCipher, keyring_from
from cluster.services.bus import Bus, shared_bus
from cluster.services.consumption import EventConsumptionService
from cluster.services.processing import StreamProcessingService
from cluster.services.publishing import EventPublishingService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from event_streaming_bus import SubscriptionService
from pipelines.envelope import EventIn, partition_for
from pipelines.spec import PipelineSpec
from tests.integration.conftest import read_topic
from tests.integration.test_subscriptions import Receiver

pytestmark = pytest.mark.integration
USER = "crypt-tests"


def canary() -> str:
    return f"CANARY-{uuid.uuid4().hex}"


async def eventually(condition: Callable[[], Any], what: str, deadline_s: float = 180) -> Any:
    """Poll `condition` (sync or async) until it answers something truthy."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = condition()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


async def encrypted_stream(stack: Settings, tenant: str, name: str, partitions: int = 1) -> Any:
    config = StreamConfig(
        stream_name=name,
        topic_name=name,
        source_capability="tests",
        partitions=partitions,
        encrypted=True,
    )
    streams = EventStreamingService(stack)
    return await streams.get_stream(await streams.create_stream(config, tenant, USER), tenant)


def event(secret: str, i: int = 0, **changes: Any) -> EventIn:
    fields: dict[str, Any] = {
        "event_type": "card.added",
        "source_capability": "tests",
        "aggregate_id": f"card-{i % 3}",
        "aggregate_type": "Card",
        "event_id": f"e-{i}-{uuid.uuid4().hex[:6]}",
        "payload": {"note": secret, "seq": i},
        **changes,
    }
    return EventIn(**fields)


def record_bytes(record: Any) -> bytes:
    """Everything a Kafka client sees of a record: value, key and headers."""
    headers = b"".join(k.encode() + (v or b"") for k, v in record.headers() or [])
    return (record.value() or b"") + (record.key() or b"") + headers


def redis_at_rest(settings: Settings) -> dict[str, bytes]:
    """What Redis holds: every key with its values (read by type, so nothing is compressed),
    and its RDB (saved now, uncompressed) and AOF files when the server's dir is local."""
    client = redis.Redis.from_url(settings.redis)
    try:
        keys = list(client.scan_iter(count=1000))
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(key)
            kinds = pipe.execute()
        read = {
            b"string": lambda p, k: p.get(k),
            b"hash": lambda p, k: p.hgetall(k),
            b"list": lambda p, k: p.lrange(k, 0, -1),
            b"set": lambda p, k: p.smembers(k),
            b"zset": lambda p, k: p.zrange(k, 0, -1),
            b"stream": lambda p, k: p.xrange(k),
        }
        with client.pipeline(transaction=False) as pipe:
            for key, kind in zip(keys, kinds, strict=True):
                read[kind](pipe, key)
            values = pipe.execute()
        found = {"keys": repr(list(zip(keys, values, strict=True))).encode()}

        def setting(name: str) -> str:
            return str(client.config_get(name)[name])

        folder = Path(setting("dir"))
        if folder.is_dir():
            compression = setting("rdbcompression")
            client.config_set("rdbcompression", "no")
            try:
                client.save()
            finally:
                client.config_set("rdbcompression", compression)
            found["rdb"] = (folder / setting("dbfilename")).read_bytes()
            aof = folder / setting("appenddirname")
            found["aof"] = b"".join(f.read_bytes() for f in sorted(aof.glob("*")) if f.is_file())
        return found
    finally:
        client.close()


def assert_not_in_redis(settings: Settings, secret: str) -> None:
    """The secret is in no part of Redis; a control value written just before is in each part,
    so the scan is known to see what Redis stores."""
    control = f"CONTROL-{uuid.uuid4().hex}" * 2  # long enough for RDB to consider compressing
    client = redis.Redis.from_url(settings.redis)
    client.set(f"esb:test:control:{uuid.uuid4().hex}", control, ex=60)
    client.close()
    dumps = redis_at_rest(settings)
    assert dumps.keys() >= {"keys", "rdb", "aof"}, "the local test stack's Redis files"
    for part, blob in dumps.items():
        assert control.encode() in blob, f"the scan does not see Redis' {part}"
        assert secret.encode() not in blob, f"the plaintext is in Redis' {part}"


async def read_all(consumption: EventConsumptionService, stream: Any) -> list[dict[str, Any]]:
    page = await consumption.read_events(stream.stream_id, stream.tenant_id, limit=1000)
    return [entry["event"] for entry in page["events"]]


async def test_canary_is_in_no_raw_record_nor_redis_and_reads_back(
    stack: Settings, unique: str
) -> None:
    tenant, secret = f"crypt-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"cards-{unique}", partitions=3)
    publisher = EventPublishingService(stack)
    await publisher.publish_one(event(secret, 0), stream.stream_id, tenant, USER)
    batch = [event(secret, i) for i in range(1, 4)]
    assert (await publisher.publish_events(batch, stream.stream_id, tenant, USER)).published == 3
    frame = pl.DataFrame(
        {
            "event_type": ["card.added"] * 3,
            "source_capability": ["tests"] * 3,
            "aggregate_id": ["card-a", "card-b", "card-c"],
            "aggregate_type": ["Card"] * 3,
            "note": [secret] * 3,
        }
    )
    arrow = await publisher.publish_arrow(frame, stream.stream_id, tenant, USER)
    assert arrow.events == 3 and len(arrow.records) == 3  # one encrypted JSON record each

    records = read_topic(stack, stream.kafka_topic, expected=7)
    assert len(records) == 7
    for record in records:
        assert secret.encode() not in record_bytes(record)
        assert MARKER in orjson.loads(record.value())
    assert_not_in_redis(stack, secret)

    events = await read_all(EventConsumptionService(stack), stream)
    assert len(events) == 7 and all(e["data"]["note"] == secret for e in events)
    assert all(MARKER not in e and e["datacontenttype"] == "application/json" for e in events)


async def test_real_ciphertext_fails_under_another_tenants_key_or_a_flipped_bit(
    stack: Settings, unique: str
) -> None:
    tenant, other, secret = f"crypt-{unique}", f"crypt-other-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"bits-{unique}")
    await EventPublishingService(stack).publish_one(event(secret), stream.stream_id, tenant, USER)
    [record] = read_topic(stack, stream.kafka_topic, expected=1)
    raw = orjson.loads(record.value())
    blob = base64.b64decode(raw["data_base64"])
    ring = shared_bus(stack).keyring
    assert secret.encode() in ring.decrypt_payload(tenant, stream.stream_id, raw["id"], blob)

    ring.current_version(other)  # the other tenant has a data key of the same version
    with pytest.raises(DecryptionFailed):
        ring.decrypt_payload(other, stream.stream_id, raw["id"], blob)
    for position in (3, 10, 5 + 12 + 1, len(blob) - 1):  # key version, nonce, body, tag
        flipped = bytearray(blob)
        flipped[position] ^= 0x04
        with pytest.raises(DecryptionFailed):
            ring.decrypt_payload(tenant, stream.stream_id, raw["id"], bytes(flipped))

    # Read-back refuses, never skips: a tampered copy, and the record copied to another
    # tenant's encrypted stream.
    theirs = await encrypted_stream(stack, other, f"bits-{unique}")
    flipped = bytearray(blob)
    flipped[-1] ^= 0x01
    tampered = {**raw, "data_base64": base64.b64encode(bytes(flipped)).decode()}
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(stream.kafka_topic, orjson.dumps(tampered), record.key())
    producer.produce(theirs.kafka_topic, record.value(), record.key())
    assert producer.flush(30) == 0
    consumption = EventConsumptionService(stack)
    with pytest.raises(DecryptionFailed, match="does not decrypt"):
        await read_all(consumption, stream)
    with pytest.raises(DecryptionFailed):
        await read_all(consumption, theirs)
    page = await consumption.read_events(stream.stream_id, tenant, from_offset=0, limit=1)
    assert page["events"][0]["event"]["data"]["note"] == secret  # the untouched one still reads


async def test_apply_refuses_to_change_encryption(stack: Settings, unique: str) -> None:
    tenant = f"crypt-{unique}"
    stream = await encrypted_stream(stack, tenant, f"fixed-{unique}")
    config = StreamConfig(
        **stream.model_dump(include=set(StreamConfig.model_fields) - {"encrypted"}),
        encrypted=False,
    )
    streams = EventStreamingService(stack)
    with pytest.raises(InvalidInput, match="encryption is fixed"):
        await streams.apply_stream(config, tenant, USER)
    same = config.model_copy(update={"encrypted": True})
    assert (await streams.apply_stream(same, tenant, USER)).action == "unchanged"


async def test_master_rotation_keeps_old_events_readable(
    stack: Settings, unique: str, tmp_path: Path
) -> None:
    tenant, secret = f"crypt-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"rotate-{unique}")
    publisher = EventPublishingService(stack)
    await publisher.publish_one(event(secret, 0), stream.stream_id, tenant, USER)
    [record] = read_topic(stack, stream.kafka_topic, expected=1)
    assert stack.esb_master_key_file is not None
    new_key = tmp_path / "new.key"
    new_key.write_text(MasterKey.generate().to_base64())
    combined = tmp_path / "master-keys.json"
    rotate = argparse.Namespace(keys_command="rotate-master", new_key_file=new_key, out=combined)
    rotated = stack.model_copy(update={"esb_master_key_file": combined})
    bus = Bus(rotated)
    try:
        assert keys_command(rotate, stack, out=io.StringIO()) == 0
        # The old master alone can no longer unwrap the tenant's key: it was rewrapped ...
        with pytest.raises(DecryptionFailed, match="does not have"):
            EventCipher(keyring_from(stack), tenant, stream.stream_id).open(
                orjson.loads(record.value())
            )
        # ... and with the rotated key file the old event reads, beside a new one.
        await EventPublishingService(bus=bus).publish_one(
            event(secret, 1), stream.stream_id, tenant, USER
        )
        events = await read_all(EventConsumptionService(bus=bus), stream)
        assert [e["data"]["seq"] for e in events] == [0, 1]
        assert {e["data"]["note"] for e in events} == {secret}
    finally:  # back to the session's master key, for every other test and process
        back = argparse.Namespace(
            keys_command="rotate-master", new_key_file=stack.esb_master_key_file, out=tmp_path / "b"
        )
        keys_command(back, rotated, out=io.StringIO())
        await bus.close()
    fresh = Bus(stack)  # no cached keys: unwraps under the session's master again
    assert len(await read_all(EventConsumptionService(bus=fresh), stream)) == 2
    await fresh.close()


async def test_deleting_a_tenants_key_shreds_its_data(stack: Settings, unique: str) -> None:
    tenant, secret = f"crypt-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"shred-{unique}")
    publisher = EventPublishingService(stack)
    await publisher.publish_one(event(secret, 0), stream.stream_id, tenant, USER)
    assert len(await read_all(EventConsumptionService(stack), stream)) == 1

    done = subprocess.run(
        [sys.executable, "-m", "cluster.cli.main", "keys", "delete-tenant", tenant, "--yes"],
        env={
            **os.environ,
            "REDIS_URL": stack.redis,
            "ESB_MASTER_KEY_FILE": str(stack.esb_master_key_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "deleted 1 data key" in done.stdout, done.stderr

    # A process without the key cached (this one keeps it for the cache TTL, 60 s) gets 410.
    bus = Bus(stack)
    try:
        with pytest.raises(KeyDeleted) as gone:
            await read_all(EventConsumptionService(bus=bus), stream)
        assert gone.value.status == 410
        # New events get a fresh data key; the shredded one stays unreadable.
        await EventPublishingService(bus=bus).publish_one(
            event(secret, 1), stream.stream_id, tenant, USER
        )
        page = await EventConsumptionService(bus=bus).read_events(
            stream.stream_id, tenant, from_offset=1
        )
        assert [e["event"]["data"]["seq"] for e in page["events"]] == [1]
    finally:
        await bus.close()


WINDOW_MS = 1_000
BASE_MS = 1_800_000_000_000


def pipeline_events(secret: str, n: int) -> list[EventIn]:
    return [
        EventIn(
            event_type="order.placed" if i % 5 else "user.seen",
            source_capability="shop",
            aggregate_id=f"k{i % 7}",
            aggregate_type="Order",
            event_id=f"o-{i}",
            event_time=BASE_MS + i * 97,
            payload={"amount": i % 50 + 1, "note": secret},
        )
        for i in range(n)
    ]


def expected_windows(events: list[dict[str, Any]]) -> dict[tuple[str, int], tuple[int, int]]:
    totals: dict[tuple[str, int], tuple[int, int]] = {}
    for e in events:
        if e["event_type"].startswith("order."):
            window = (e["aggregate_id"], e["event_time"] - e["event_time"] % WINDOW_MS)
            count, total = totals.get(window, (0, 0))
            totals[window] = (count + 1, total + e["amount"])
    return totals


async def window_results(
    service: StreamProcessingService, pipeline_id: str, tenant: str
) -> dict[tuple[str, int], tuple[int, int]]:
    found: dict[tuple[str, int], tuple[int, int]] = {}
    offset: int | None = 0
    while offset is not None:
        page = await service.results(pipeline_id, tenant, limit=1000, offset=offset)
        for r in page["results"]:
            if not r["key"].startswith("sentinel"):
                found[(r["key"], r["window_start_ms"])] = (r["orders"], r["revenue"])
        offset = page["next_offset"]
    return found


async def test_pipeline_over_an_encrypted_stream_computes_the_plaintext_windows(
    stack: Settings, unique: str
) -> None:
    tenant, secret = f"crypt-{unique}", canary()
    stream = await encrypted_stream(stack, tenant, f"orders-{unique}", partitions=2)
    publisher = EventPublishingService(stack)
    published = pipeline_events(secret, 300)
    await publisher.publish_events(published, stream.stream_id, tenant, USER)
    arrow = [
        {"event_type": "order.placed", "aggregate_id": f"k{i % 7}", "event_time": t, "amount": i}
        for i, t in enumerate(range(BASE_MS + 50, BASE_MS + 30_000, 1_500))
    ]
    frame = pl.DataFrame(arrow).with_columns(
        pl.lit("shop").alias("source_capability"),
        pl.lit("Order").alias("aggregate_type"),
        pl.lit(secret).alias("note"),
    )
    await publisher.publish_arrow(frame, stream.stream_id, tenant, USER)
    [first, *_] = read_topic(stack, stream.kafka_topic, expected=len(published) + len(arrow))
    tampered = orjson.loads(first.value())
    tampered["data_base64"] = tampered["data_base64"][:-4] + "AAA="
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    landed: list[int] = []
    producer.produce(
        stream.kafka_topic,
        orjson.dumps(tampered),
        first.key(),
        first.partition(),
        on_delivery=lambda _err, msg: landed.append(msg.offset() or 0),
    )
    assert producer.flush(30) == 0 and len(landed) == 1

    spec = PipelineSpec.model_validate(
        {
            "pipeline_name": "totals",
            "source_stream": stream.stream_id,
            "event_types": ["order.*"],
            "fields": {"amount": "int", "note": "str"},
            "window": {"type": "tumbling", "size_ms": WINDOW_MS},
            "allowed_lateness_ms": 60_000,
            "late_policy": "dead_letter",
            "aggregations": [
                {"name": "orders", "op": "count"},
                {"name": "revenue", "op": "sum", "field": "amount"},
            ],
        }
    )
    processing = StreamProcessingService(stack)
    pipeline = await processing.submit_pipeline(spec, tenant, USER, owners=1)
    try:
        # One far-future event per partition closes every window.
        sentinels = [
            next(f"sentinel-{i}" for i in range(100) if partition_for(f"sentinel-{i}", 2) == p)
            for p in range(2)
        ]
        closing = [
            EventIn(
                event_type="order.tick",
                source_capability="shop",
                aggregate_id=key,
                aggregate_type="Order",
                event_time=BASE_MS + 10_000_000,
                payload={"amount": 0},
            )
            for key in sentinels
        ]
        await publisher.publish_events(closing, stream.stream_id, tenant, USER)
        inputs = [{**e.model_dump(), **e.payload} for e in published] + arrow
        expected = expected_windows(inputs)
        await eventually(
            lambda: _equal(window_results(processing, pipeline.pipeline_id, tenant), expected),
            "the encrypted pipeline's windows",
            deadline_s=300,
        )

        # A late event is dead-lettered without its payload: no plaintext lands in Redis.
        late = pipeline_events(secret, 2)[1].model_copy(
            update={"aggregate_id": sentinels[0], "event_id": f"late-{unique}"}
        )
        await publisher.publish_events([late], stream.stream_id, tenant, USER)
        dead = await eventually(
            lambda: _reasons(processing, pipeline.pipeline_id, tenant, {"late", "undecryptable"}),
            "the late and the tampered record dead-lettered",
        )
        assert dead["undecryptable"]["offset"] == landed[0]
        assert dead["undecryptable"]["error"].startswith("DecryptionFailed")
        assert "note" not in dead["late"] and "amount" not in dead["late"]
        status = await processing.status(pipeline.pipeline_id, tenant)
        assert status["progress"]["undecryptable"] == 1
        assert await window_results(processing, pipeline.pipeline_id, tenant) == expected
        assert_not_in_redis(stack, secret)
    finally:
        await processing.stop_pipeline(pipeline.pipeline_id, tenant)


async def _equal(found: Any, expected: Any) -> bool:
    return bool(await found == expected)


async def _reasons(
    service: StreamProcessingService, pipeline_id: str, tenant: str, wanted: set[str]
) -> dict[str, dict[str, Any]] | None:
    found = {d["reason"]: d for d in await service.dead_letters(pipeline_id, tenant)}
    return found if wanted <= found.keys() else None


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
