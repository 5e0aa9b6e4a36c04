"""The schema registry's storage: a compacted Kafka topic is the truth, Redis a cache of it.

Every change is produced to `esb._schemas` (one partition, cleanup.policy=compact, acks=all)
before Redis is written, so a lost Redis loses nothing: the first call that finds the cache's
`loaded` marker missing replays the topic into Redis (one replica at a time, under a lock), and
a new replica with an empty Redis does the same. Records (JSON key -> JSON value):

    {"kind": "version", "tenant", "subject", "version"} -> {"id", "schema_type", "schema",
                                                           "deleted"}; null: permanently deleted
    {"kind": "config", "tenant", "subject"}             -> {"compatibility"}; null: unset
                                                           (subject "" is the tenant's default)
    {"kind": "event-type", "tenant", "subject"}         -> {"event_type"} (the /api/v1 face)

Redis (cluster.naming.registry_key; everything under `esb:registry:`):

    esb:registry:loaded                      set once the cache holds the whole topic
    esb:registry:loading                     the replay lock (NX, expires)
    esb:registry:next-id                     the last schema id given out (INCR)
    esb:registry:schema:<id>                 StoredSchema JSON
    esb:registry:tenant:<t>:subjects         hash subject -> JSON list of VersionRef
    esb:registry:tenant:<t>:fingerprints     hash schema fingerprint -> id (same schema, same id)
    esb:registry:tenant:<t>:config           hash subject ("" for the tenant) -> compatibility
    esb:registry:tenant:<t>:event-types      hash subject -> the event type it describes
    esb:registry:tenant:<t>:lock             one registration per tenant at a time (NX, expires)

Ids come from INCR; a replay sets next-id to at least the highest id in the topic first, so an
id is never given out twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from redis.asyncio import Redis

from cluster import naming
from cluster.errors import Conflict, NotFound, ServiceUnavailable
from cluster.kafka.clients import AsyncProducer, new_consumer
from cluster.kafka.topics import TopicAdmin
from cluster.models.schemas import StoredSchema, VersionRef
from cluster.settings import Settings
from pipelines.schemas.parsed import fingerprint_of

LOADED = naming.registry_key("loaded")
LOADING = naming.registry_key("loading")
NEXT_ID = naming.registry_key("next-id")
LOCK_TTL_MS = 15_000
_RAISE_TO = (  # next-id := max(next-id, ARGV[1])
    "local v = tonumber(redis.call('get', KEYS[1]) or '0') "
    "if v < tonumber(ARGV[1]) then redis.call('set', KEYS[1], ARGV[1]) end"
)


def _schema_key(schema_id: int) -> str:
    return naming.registry_key("schema", schema_id)


def _subjects_key(tenant_id: str) -> str:
    return naming.registry_tenant_key(tenant_id, "subjects")


def _fingerprints_key(tenant_id: str) -> str:
    return naming.registry_tenant_key(tenant_id, "fingerprints")


def _config_key(tenant_id: str) -> str:
    return naming.registry_tenant_key(tenant_id, "config")


def _event_types_key(tenant_id: str) -> str:
    return naming.registry_tenant_key(tenant_id, "event-types")


_HASHES = {"config": (_config_key, "compatibility"), "event-type": (_event_types_key, "event_type")}


def _refs(raw: bytes | str | None) -> list[VersionRef]:
    return [VersionRef.model_validate(v) for v in orjson.loads(raw)] if raw else []


class SchemaStore:
    def __init__(
        self, redis: Redis, settings: Settings, producer: AsyncProducer, topics: TopicAdmin
    ) -> None:
        self._redis, self._settings = redis, settings
        self._producer, self._topics = producer, topics
        self._topic_ready = False

    # reads: each is one Redis round trip, plus a replay when the cache was lost -------------

    async def _read(self, *commands: tuple[str, tuple[Any, ...]]) -> list[Any]:
        for _ in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(LOADED)
                for name, args in commands:
                    getattr(pipe, name)(*args)
                loaded, *answers = await pipe.execute()
            if loaded:
                return answers
            await self.replay()
        raise ServiceUnavailable("the schema registry cache could not be rebuilt from Kafka")

    async def versions(self, tenant_id: str, subject: str) -> list[VersionRef]:
        (raw,) = await self._read(("hget", (_subjects_key(tenant_id), subject)))
        return _refs(raw)

    async def subjects(self, tenant_id: str) -> dict[str, list[VersionRef]]:
        (found,) = await self._read(("hgetall", (_subjects_key(tenant_id),)))
        return {k.decode(): _refs(v) for k, v in found.items()}

    async def schema(self, schema_id: int) -> StoredSchema | None:
        (raw,) = await self._read(("get", (_schema_key(schema_id),)))
        return StoredSchema.model_validate_json(raw) if raw else None

    async def schemas(self, schema_ids: list[int]) -> list[StoredSchema | None]:
        (raws,) = await self._read(("mget", ([_schema_key(i) for i in schema_ids],)))
        return [StoredSchema.model_validate_json(r) if r else None for r in raws]

    async def id_for(self, tenant_id: str, fingerprint: str) -> int | None:
        (raw,) = await self._read(("hget", (_fingerprints_key(tenant_id), fingerprint)))
        return int(raw) if raw else None

    async def config(self, tenant_id: str, subject: str) -> str | None:
        (raw,) = await self._read(("hget", (_config_key(tenant_id), subject)))
        return raw.decode() if raw else None

    async def event_types(self, tenant_id: str) -> dict[str, str]:
        """Subject -> the event type it was registered for through /api/v1/schemas."""
        (found,) = await self._read(("hgetall", (_event_types_key(tenant_id),)))
        return {k.decode(): v.decode() for k, v in found.items()}

    # writes: Kafka first (acked), then the cache -------------------------------------------

    async def next_id(self) -> int:
        await self._read()  # a lost cache is replayed before an id is given out
        return int(await self._redis.incr(NEXT_ID))

    @contextlib.asynccontextmanager
    async def locked(self, tenant_id: str) -> AsyncIterator[None]:
        """One registration per tenant at a time, across replicas (versions are a sequence)."""
        key, token = naming.registry_tenant_key(tenant_id, "lock"), uuid.uuid4().hex
        for _ in range(2000):
            if await self._redis.set(key, token, nx=True, px=LOCK_TTL_MS):
                break
            await asyncio.sleep(0.01)
        else:
            raise Conflict(f"schema registrations of tenant {tenant_id!r} are stuck; retry")
        try:
            yield
        finally:
            if await self._redis.get(key) == token.encode():
                await self._redis.delete(key)

    async def put_versions(
        self,
        tenant_id: str,
        subject: str,
        versions: list[VersionRef],
        changed: list[VersionRef],
        removed: list[int],
        schema: StoredSchema | None = None,
    ) -> None:
        """Log `changed` (and tombstones for `removed`) to Kafka, then cache `versions` whole."""
        records: list[tuple[bytes, bytes | None]] = []
        for ref in changed:
            stored = (
                schema if schema is not None and schema.id == ref.id else await self.schema(ref.id)
            )
            assert stored is not None, f"schema {ref.id} is missing"
            value = {
                "id": ref.id,
                "schema_type": stored.schema_type,
                "schema": stored.schema_text,
                "deleted": ref.deleted,
            }
            records.append((_version_key(tenant_id, subject, ref.version), orjson.dumps(value)))
        records += [(_version_key(tenant_id, subject, v), None) for v in removed]
        await self._log(records)
        async with self._redis.pipeline(transaction=True) as pipe:
            if schema is not None:
                pipe.set(_schema_key(schema.id), schema.model_dump_json())
                pipe.hset(
                    _fingerprints_key(tenant_id),
                    fingerprint_of(schema.schema_type, schema.schema_text),
                    schema.id,
                )
            if versions:
                pipe.hset(_subjects_key(tenant_id), subject, _dump_refs(versions))
            else:
                pipe.hdel(_subjects_key(tenant_id), subject)
            await pipe.execute()

    async def put_config(self, tenant_id: str, subject: str, level: str | None) -> None:
        await self._put_field("config", tenant_id, subject, level)

    async def put_event_type(self, tenant_id: str, subject: str, event_type: str) -> None:
        await self._put_field("event-type", tenant_id, subject, event_type)

    async def _put_field(self, kind: str, tenant_id: str, subject: str, value: str | None) -> None:
        hash_key, field = _HASHES[kind]
        key = orjson.dumps({"kind": kind, "tenant": tenant_id, "subject": subject})
        await self._log([(key, None if value is None else orjson.dumps({field: value}))])
        if value is None:
            await self._redis.hdel(hash_key(tenant_id), subject)
        else:
            await self._redis.hset(hash_key(tenant_id), subject, value)

    async def _log(self, records: list[tuple[bytes, bytes | None]]) -> None:
        await self._ensure_topic()
        deliveries = await self._producer.send_many(
            naming.SCHEMAS_TOPIC,
            records,  # type: ignore[arg-type]  # a None value is a tombstone
            timeout_s=self._settings.publish_timeout_s + 5,
            partitions=[0] * len(records),
        )
        failed = [d.error for d in deliveries if d.error]
        if failed:
            raise ServiceUnavailable(f"Kafka refused the schema registry's write: {failed[0]}")

    async def _ensure_topic(self) -> None:
        if self._topic_ready:
            return
        if not await asyncio.to_thread(self._topics.exists, naming.SCHEMAS_TOPIC):
            brokers = await asyncio.to_thread(self._topics.broker_count)
            configs = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
            with contextlib.suppress(Conflict):  # another replica made it first
                await asyncio.to_thread(
                    self._topics.create, naming.SCHEMAS_TOPIC, 1, min(3, brokers), configs
                )
        self._topic_ready = True

    # replay ---------------------------------------------------------------------------------

    async def replay(self) -> None:
        """Rebuild the cache from the topic; one replica replays, the others wait for it."""
        if not await self._redis.set(LOADING, b"1", nx=True, px=60_000):
            for _ in range(6000):
                if await self._redis.exists(LOADED):
                    return
                await asyncio.sleep(0.01)
            raise ServiceUnavailable("another replica is still rebuilding the schema cache")
        try:
            await self._ensure_topic()
            high = await asyncio.to_thread(_end_offset, self._topics)
            state = await asyncio.to_thread(_read_log, self._settings, high)
            async with self._redis.pipeline(transaction=True) as pipe:
                for command, args in _cache_commands(state):
                    getattr(pipe, command)(*args)
                pipe.set(LOADED, b"1")
                await pipe.execute()
        finally:
            await self._redis.delete(LOADING)


def _version_key(tenant_id: str, subject: str, version: int) -> bytes:
    return orjson.dumps(
        {"kind": "version", "tenant": tenant_id, "subject": subject, "version": version}
    )


def _dump_refs(refs: list[VersionRef]) -> bytes:
    return orjson.dumps([r.model_dump() for r in refs])


def _end_offset(topics: TopicAdmin) -> int:
    """The log's end offset; retried while a just-created topic's metadata and leader settle."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return topics.watermarks(naming.SCHEMAS_TOPIC)[0][1]
        except (NotFound, ServiceUnavailable, KafkaException, KeyError):
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"{naming.SCHEMAS_TOPIC} has no readable leader") from None
            time.sleep(0.2)


def _read_log(settings: Settings, high: int) -> dict[bytes, Any]:
    """The topic's latest value per key (what compaction keeps), read to its end."""
    consumer = new_consumer(settings, naming.reader_group("schemas"))
    latest: dict[bytes, Any] = {}
    try:
        consumer.assign([TopicPartition(naming.SCHEMAS_TOPIC, 0, OFFSET_BEGINNING)])
        position, deadline = 0, time.monotonic() + 120
        while position < high:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"reading {naming.SCHEMAS_TOPIC} did not finish in 120s")
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    continue
                key, value = message.key(), message.value()
                latest[key or b""] = orjson.loads(value) if value is not None else None
                position = (message.offset() or 0) + 1
    finally:
        consumer.close()
    return latest


def _cache_commands(latest: dict[bytes, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    """Redis commands that put the topic's state into the cache."""
    subjects: dict[tuple[str, str], list[VersionRef]] = {}
    commands: list[tuple[str, tuple[Any, ...]]] = []
    max_id = 0
    for raw_key, value in latest.items():
        key = orjson.loads(raw_key)
        tenant, subject = key["tenant"], key["subject"]
        if key["kind"] in _HASHES:
            hash_key, field = _HASHES[key["kind"]]
            if value is not None:
                commands.append(("hset", (hash_key(tenant), subject, value[field])))
            continue
        if value is None:
            continue
        ref = VersionRef(version=key["version"], id=value["id"], deleted=value["deleted"])
        subjects.setdefault((tenant, subject), []).append(ref)
        stored = StoredSchema(
            id=value["id"],
            tenant_id=tenant,
            schema_type=value["schema_type"],
            schema_text=value["schema"],
        )
        commands.append(("set", (_schema_key(stored.id), stored.model_dump_json())))
        fingerprint = fingerprint_of(stored.schema_type, stored.schema_text)
        commands.append(("hset", (_fingerprints_key(tenant), fingerprint, stored.id)))
        max_id = max(max_id, stored.id)
    for (tenant, subject), refs in subjects.items():
        refs.sort(key=lambda r: r.version)
        commands.append(("hset", (_subjects_key(tenant), subject, _dump_refs(refs))))
    commands.append(("eval", (_RAISE_TO, 1, NEXT_ID, max_id)))
    return commands
