"""The capability catalog in Redis: one hash per tenant, `esb:tenant:<t>:capabilities`,
capability name -> CapabilityRecord JSON (so listing a tenant's catalog is one HGETALL)."""

from __future__ import annotations

from redis.asyncio import Redis

from cluster import naming
from cluster.errors import NotFound
from cluster.models.capabilities import CapabilityRecord


class CapabilityStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def save(self, record: CapabilityRecord) -> None:
        key = naming.capabilities_key(record.tenant_id)
        await self._redis.hset(key, record.name, record.model_dump_json())

    async def get(self, tenant_id: str, name: str) -> CapabilityRecord:
        raw = await self._redis.hget(naming.capabilities_key(tenant_id), name)
        if raw is None:
            raise NotFound(f"capability {name!r} not found; register it first")
        return CapabilityRecord.model_validate_json(raw)

    async def list(self, tenant_id: str) -> list[CapabilityRecord]:
        found = await self._redis.hgetall(naming.capabilities_key(tenant_id))
        records = [CapabilityRecord.model_validate_json(v) for v in found.values()]
        return sorted(records, key=lambda r: r.name)

    async def delete(self, tenant_id: str, name: str) -> None:
        if not await self._redis.hdel(naming.capabilities_key(tenant_id), name):
            raise NotFound(f"capability {name!r} not found")
