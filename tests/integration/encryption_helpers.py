"""Helpers for the encryption-at-rest tests (test_encryption_*.py): encrypted streams and
events with a canary secret, and checks that the canary is nowhere it must not be."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from cluster.models.streams import StreamConfig
from cluster.services.consumption import EventConsumptionService
from cluster.services.streaming import EventStreamingService
from cluster.settings import Settings
from pipelines.envelope import EventIn

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
