"""Encryption at rest on the real broker, Redis and Ray, through the SDK services: a canary
published to an encrypted stream is in no raw Kafka record and nowhere in Redis (keys, RDB,
AOF) yet reads back; ciphertext fails under another tenant's key or with a flipped bit; master
rotation keeps old events readable; deleting a tenant's keys shreds its data."""

from __future__ import annotations

import argparse
import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import polars as pl
import pytest
from confluent_kafka import Producer

from cluster.cli.keys import execute as keys_command
from cluster.errors import InvalidInput
from cluster.models.streams import StreamConfig
from cluster.security import DecryptionFailed, KeyDeleted, MasterKey
from cluster.security.event_crypto import MARKER, EventCipher, keyring_from
from cluster.services.bus import Bus, shared_bus
from cluster.services.consumption import EventConsumptionService
from cluster.services.publishing import EventPublishingService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from tests.integration.conftest import read_topic
from tests.integration.encryption_helpers import (
    USER,
    assert_not_in_redis,
    canary,
    encrypted_stream,
    event,
    read_all,
    record_bytes,
)

pytestmark = pytest.mark.integration


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
