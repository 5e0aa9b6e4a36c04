"""The registry of streams in Redis: metadata, names per tenant, publish counters.

Keys (all under `esb:`):
    esb:streams                       set of every stream id
    esb:stream:<id>                   the StreamRecord as JSON
    esb:tenant:<tenant>:stream-names  hash stream_name -> stream id
    esb:stream:<id>:stats             hash of counters (published)
"""

from __future__ import annotations

from redis.asyncio import Redis

from cluster import naming
from cluster.errors import Conflict
from cluster.models.streams import StreamRecord
from cluster.stores.records import TenantRecords

ALL = naming.ALL_STREAMS


def _record_key(stream_id: str) -> str:
    return naming.stream_key(stream_id)


def _names_key(tenant_id: str) -> str:
    return naming.tenant_key(tenant_id, "stream-names")


def _stats_key(stream_id: str) -> str:
    return naming.stream_key(stream_id, "stats")


class StreamRegistry:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._records = TenantRecords(redis, StreamRecord, "stream", _record_key, ALL)

    async def reserve_name(self, tenant_id: str, stream_name: str, stream_id: str) -> None:
        """Claim a name before the topic exists, so two creators cannot both win."""
        if not await self._redis.hsetnx(_names_key(tenant_id), stream_name, stream_id):
            raise Conflict(f"stream {stream_name!r} already exists in tenant {tenant_id!r}")

    async def release_name(self, tenant_id: str, stream_name: str) -> None:
        await self._redis.hdel(_names_key(tenant_id), stream_name)

    async def save(self, record: StreamRecord) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_record_key(record.stream_id), record.model_dump_json())
            pipe.sadd(ALL, record.stream_id)
            pipe.hset(_names_key(record.tenant_id), record.stream_name, record.stream_id)
            await pipe.execute()

    async def get(self, stream_id: str, tenant_id: str | None = None) -> StreamRecord:
        return await self._records.get(stream_id, tenant_id)

    async def id_for_name(self, tenant_id: str, stream_name: str) -> str | None:
        found = await self._redis.hget(_names_key(tenant_id), stream_name)
        return found.decode() if isinstance(found, bytes) else found

    async def resolve(self, stream: str, tenant_id: str | None) -> StreamRecord:
        """A stream by id, or by name within the tenant."""
        if tenant_id is not None and (by_name := await self.id_for_name(tenant_id, stream)):
            stream = by_name
        return await self.get(stream, tenant_id)

    async def list(self, tenant_id: str | None = None) -> list[StreamRecord]:
        records = await self._records.list(tenant_id)
        return sorted(records, key=lambda r: (r.tenant_id, r.stream_name))

    async def delete(self, record: StreamRecord) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(_record_key(record.stream_id), _stats_key(record.stream_id))
            pipe.srem(ALL, record.stream_id)
            pipe.hdel(_names_key(record.tenant_id), record.stream_name)
            await pipe.execute()

    async def count_published(self, stream_id: str, n: int) -> None:
        await self._redis.hincrby(_stats_key(stream_id), "published", n)

    async def published(self, stream_id: str) -> int:
        return int(await self._redis.hget(_stats_key(stream_id), "published") or 0)
